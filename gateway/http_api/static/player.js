// The tab player: alphaTab renders the job's tab.gp5 (notation and tab, a track per part) and
// its cursor follows the recording through sync points made from the beats the chain tracked,
// or alphaTab's synthesiser plays the parts. Speed (pitch kept), A-B loop over bars, count-in,
// metronome, per-track mute and solo, and the song without a part to play along with.
"use strict";

const TabPlayer = (() => {
  const BASE = new URL("/vendor/alphatab/", location.href).href;   // workers need absolute URLs
  const TICKS_PER_QUARTER = 960;   // alphaTab's MIDI ticks per quarter note
  const LOOKAHEAD = 0.12;          // seconds of metronome clicks scheduled ahead

  let api = null;                  // alphaTab.AlphaTabApi
  let score = null;                // the loaded alphaTab score (set before the API holds it)
  let padTicks = 0;                // rests tab.gp5 puts before a pickup (its notice says how many)
  let media = null;                // the <audio> element the recording plays in
  let data = null;                 // GET /v1/jobs/{id}/player
  let knots = { audio: [], score: [] };
  let mode = "audio";              // "audio": the recording (or a backing track); "synth": alphaTab's synthesiser
  let loop = null;                 // { from, to } bar numbers (1-based), or null
  let clicks = null;               // AudioContext for count-in and metronome over the recording
  let clickedUntil = -1;           // recording time up to which metronome clicks are scheduled
  let frame = 0;
  let countingIn = null;
  let clickCount = 0;              // clicks scheduled so far (count-in and metronome)
  let wanted = "original";         // the audio source the listener chose
  let readyWaiters = [];
  const el = {};

  // -- loading alphaTab -------------------------------------------------------------------------

  let scriptPromise = null;
  function loadScript() {
    if (typeof alphaTab !== "undefined") return Promise.resolve();
    if (!scriptPromise) {
      scriptPromise = new Promise((resolve, reject) => {
        const s = document.createElement("script");
        s.src = BASE + "alphaTab.js";
        s.onload = () => resolve();
        s.onerror = () => reject(new Error("the tab player (alphaTab) is not installed on this gateway; run scripts/install.sh"));
        document.head.appendChild(s);
      });
    }
    return scriptPromise;
  }

  // -- time: recording seconds <-> score seconds <-> ticks ---------------------------------------

  function interp(x, xs, ys) {
    const n = xs.length;
    if (n < 2) return x;
    if (x <= xs[0]) return ys[0] + (x - xs[0]);
    if (x >= xs[n - 1]) return ys[n - 1] + (x - xs[n - 1]);
    let lo = 0, hi = n - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] <= x) lo = mid; else hi = mid;
    }
    return ys[lo] + (ys[hi] - ys[lo]) * (x - xs[lo]) / (xs[hi] - xs[lo]);
  }
  // Score seconds are the tab's time from its first note's bar; a GP5 pickup bar is filled
  // out with rests first, so its ticks run `padTicks` ahead of score time.
  const secondsPerTick = () => 60 / score.tempo / TICKS_PER_QUARTER;
  const tickToAudio = (tick) => interp((tick - padTicks) * secondsPerTick(), knots.score, knots.audio);
  const audioToTick = (t) => interp(t, knots.audio, knots.score) / secondsPerTick() + padTicks;

  function barAt(tick) {
    const bars = score.masterBars;
    let lo = 0, hi = bars.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (bars[mid].start <= tick) lo = mid; else hi = mid - 1;
    }
    return bars[lo];
  }

  // One sync point per tracked beat, one at the start and one at the end of the score: the
  // recording's time of each place in the score (alphaTab interpolates between them).
  function syncPoints() {
    const bars = score.masterBars;
    if (!bars.length) return [];
    const last = bars[bars.length - 1];
    const end = last.start + last.calculateDuration();
    // From the first note's bar on (a pickup's padding rests before it are not in the song).
    const ticks = [padTicks, ...knots.score.map((s) => s / secondsPerTick() + padTicks), end]
      .filter((t) => t >= padTicks && t <= end).sort((a, b) => a - b);
    const points = [];
    let prev = -1;
    for (const tick of ticks) {
      if (tick - prev < 1) continue;
      prev = tick;
      const bar = tick >= end ? last : barAt(tick);
      const position = Math.min(1, (tick - bar.start) / bar.calculateDuration());
      points.push({ barIndex: bar.index, barOccurence: 0, barPosition: position,
                    millisecondOffset: Math.max(0, tickToAudio(tick) * 1000) });
    }
    return points;
  }

  // Chord names above the first track's beats (when the tab does not name them already).
  function addChords() {
    if (!data.chords || !data.chords.length || !score.tracks.length) return;
    const staff = score.tracks[0].staves[0];
    const beats = [];
    for (const bar of staff.bars) for (const beat of bar.voices[0].beats) beats.push(beat);
    if (beats.some((b) => b.chordId)) return;
    let i = 0;
    for (const mark of data.chords) {
      const tick = audioToTick(mark.start);
      while (i < beats.length && beats[i].absolutePlaybackStart + beats[i].playbackDuration <= tick) i++;
      if (i >= beats.length) break;
      const chord = new alphaTab.model.Chord();
      chord.name = mark.name;
      chord.showDiagram = false;
      chord.showFingering = false;
      const id = `tabagent-${i}`;
      staff.addChord(id, chord);
      beats[i].chordId = id;
    }
  }

  // -- the recording ----------------------------------------------------------------------------

  function externalHandler() {
    return {
      get backingTrackDuration() { return (media.duration || data.duration || 0) * 1000; },
      get playbackRate() { return media.playbackRate; },
      set playbackRate(value) { media.playbackRate = value; },
      get masterVolume() { return media.volume; },
      set masterVolume(value) { media.volume = Math.max(0, Math.min(1, value)); },
      seekTo(ms) { media.currentTime = ms / 1000; clickedUntil = -1; },
      play() { media.play().catch((err) => note(`The browser would not play: ${err.message}`)); },
      pause() { media.pause(); },
    };
  }

  function attachHandler() {
    if (mode !== "audio" || !api || !api.player) return;
    const output = api.player.output;
    if (output && "handler" in output && !output.handler) output.handler = externalHandler();
  }

  function tick() {
    frame = 0;
    if (mode === "audio" && api && api.player && api.player.output && api.player.output.updatePosition) {
      const t = media.currentTime;
      if (loop && !media.paused) {
        const [a, b] = loopTimes();
        if (t >= b) {
          media.currentTime = a;
          clickedUntil = -1;
        }
      }
      api.player.output.updatePosition(media.currentTime * 1000);
      if (el.metronome.checked && !media.paused) scheduleClicks(media.currentTime);
    }
    showTime();
    if (!media.paused) frame = requestAnimationFrame(tick);
  }

  function startTicking() {
    if (!frame) frame = requestAnimationFrame(tick);
  }

  // -- clicks (count-in and metronome over the recording) ----------------------------------------

  function click(when, accent) {
    clicks = clicks || new AudioContext();
    clickCount++;
    const osc = clicks.createOscillator();
    const gain = clicks.createGain();
    osc.frequency.value = accent ? 1760 : 1175;
    gain.gain.setValueAtTime(0.0001, when);
    gain.gain.exponentialRampToValueAtTime(0.5, when + 0.002);
    gain.gain.exponentialRampToValueAtTime(0.0001, when + 0.05);
    osc.connect(gain).connect(clicks.destination);
    osc.start(when);
    osc.stop(when + 0.06);
  }

  function scheduleClicks(t) {
    clicks = clicks || new AudioContext();
    const rate = media.playbackRate || 1;
    if (clickedUntil < t - 0.5 || clickedUntil > t + 1) clickedUntil = t;
    const until = t + LOOKAHEAD * rate;
    const downbeats = new Set((data.downbeats || []).map((d) => d.toFixed(3)));
    for (const b of data.beats) {
      if (b <= clickedUntil || b > until) continue;
      click(clicks.currentTime + (b - t) / rate, downbeats.has(b.toFixed(3)));
    }
    clickedUntil = Math.max(clickedUntil, until);
  }

  // One bar of clicks at the local beat length (at the chosen speed), then `then()`.
  function countIn(then) {
    clicks = clicks || new AudioContext();
    const t = media.currentTime;
    const beats = data.beats;
    let k = beats.findIndex((b) => b >= t);
    if (k < 1) k = Math.min(1, beats.length - 1);
    const period = beats.length > 1 ? (beats[k] - beats[k - 1]) : 60 / (data.tempo || 120);
    const perBar = Number((data.time_signature || "4/4").split("/")[0]) || 4;
    const step = period / (media.playbackRate || 1);
    const start = clicks.currentTime + 0.05;
    for (let i = 0; i < perBar; i++) click(start + i * step, i === 0);
    countingIn = setTimeout(() => { countingIn = null; then(); }, (0.05 + perBar * step) * 1000);
  }

  // -- controls -----------------------------------------------------------------------------------

  function play() {
    if (!api) return;
    if (mode === "synth") {
      api.countInVolume = el.countIn.checked ? 1 : 0;
      api.metronomeVolume = el.metronome.checked ? 1 : 0;
      api.play();
      return;
    }
    attachHandler();
    if (clicks && clicks.state === "suspended") clicks.resume();
    if (el.countIn.checked) countIn(() => api.play()); else api.play();
  }

  function pause() {
    if (countingIn) { clearTimeout(countingIn); countingIn = null; }
    if (api) api.pause();
  }

  function playing() {
    if (!media || !api) return false;
    return mode === "audio" ? !media.paused : !!(api && api.playerState === alphaTab.synth.PlayerState.Playing);
  }

  function setSpeed(percent) {
    const speed = percent / 100;
    el.speedOut.textContent = `${percent}%`;
    media.preservesPitch = true;     // time-stretched, pitch kept
    if (api) api.playbackSpeed = speed;
    media.playbackRate = speed;
  }

  function loopTimes() {
    const bars = score.masterBars;
    const a = bars[Math.max(0, Math.min(bars.length - 1, loop.from - 1))];
    const b = bars[Math.max(0, Math.min(bars.length - 1, loop.to - 1))];
    return [tickToAudio(a.start), tickToAudio(b.start + b.calculateDuration())];
  }

  function setLoop(on) {
    if (!api || !score) return;
    const n = score.masterBars.length;
    const from = Math.max(1, Math.min(n, Number(el.loopFrom.value) || 1));
    const to = Math.max(from, Math.min(n, Number(el.loopTo.value) || n));
    el.loopFrom.value = from;
    el.loopTo.value = to;
    loop = on ? { from, to } : null;
    if (loop) {
      const bars = score.masterBars;
      const end = bars[to - 1];
      api.playbackRange = { startTick: bars[from - 1].start, endTick: end.start + end.calculateDuration() };
      api.isLooping = mode === "synth";   // over the recording the page loops the media itself
      if (mode === "audio") {
        const [a, b] = loopTimes();
        if (media.currentTime < a || media.currentTime >= b) seekAudio(a);
      } else {
        api.tickPosition = bars[from - 1].start;
      }
    } else {
      api.playbackRange = null;
      api.isLooping = false;
    }
  }

  function seekAudio(t) {
    media.currentTime = t;
    clickedUntil = -1;
    if (api && api.player && api.player.output && api.player.output.updatePosition) {
      api.player.output.updatePosition(t * 1000);
    }
  }

  function trackState() {
    return [...el.tracks.querySelectorAll(".pl-track")].map((row) => ({
      index: Number(row.dataset.track),
      name: row.dataset.name,
      mute: row.querySelector(".pl-mute").checked,
      solo: row.querySelector(".pl-solo").checked,
    }));
  }

  // Mute and solo act on the synthesised parts; over the recording, muting one part plays
  // the song without it (its backing track) when there is one.
  function applyTracks() {
    if (!api || !score) return;
    const state = trackState();
    for (const t of state) {
      const track = score.tracks[t.index];
      if (!track) continue;
      // The model too: a MIDI made again (switching to the synthesiser) starts from it.
      track.playbackInfo.isMute = t.mute;
      track.playbackInfo.isSolo = t.solo;
      api.changeTrackMute([track], t.mute);
      api.changeTrackSolo([track], t.solo);
    }
    if (mode === "audio") {
      const muted = state.filter((t) => t.mute);
      const backing = muted.length === 1 ? `no-${muted[0].name}` : null;
      const target = backing && data.audio[backing] ? backing : wanted === "synth" ? "original" : wanted;
      if (muted.length > 1) note("Over the recording one part can be left out at a time; switch to the synthesised parts to mute more.");
      useSource(target, false);
    }
  }

  function sourceLabel(name) {
    if (name === "original") return data.final ? "original recording" : "original recording (uploaded file)";
    if (name === "synth") return "synthesised parts";
    return `without ${name.slice(3)} (backing track)`;
  }

  function fillSources() {
    const names = [...Object.keys(data.audio).sort((a, b) => (a === "original" ? -1 : b === "original" ? 1 : a.localeCompare(b))), "synth"];
    el.source.innerHTML = "";
    for (const name of names) {
      const opt = document.createElement("option");
      opt.value = name;
      opt.textContent = sourceLabel(name);
      el.source.appendChild(opt);
    }
    if (!names.includes(wanted)) wanted = names[0];
    el.source.value = el.source.value && names.includes(el.source.value) ? el.source.value : wanted;
  }

  // Switch between the recording (or a backing track) and the synthesiser, keeping the place.
  function useSource(name, chosen = true) {
    if (chosen) wanted = name;
    el.source.value = name;
    const wasPlaying = playing();
    const tickNow = api ? api.tickPosition : 0;
    if (name === "synth") {
      if (mode !== "synth") {
        media.pause();
        mode = "synth";
        api.settings.player.playerMode = alphaTab.PlayerMode.EnabledSynthesizer;
        api.updateSettings();
        whenReady(() => {
          api.loadMidiForScore();
          applyTracks();
          api.tickPosition = tickNow;
          if (loop) setLoop(true);
          setSpeed(Number(el.speed.value));
          if (wasPlaying) play();
        });
      }
      showNotes();
      return;
    }
    const url = data.audio[name] || data.audio.original;
    const t = mode === "audio" ? media.currentTime : tickToAudio(tickNow);
    if (mode === "synth") {
      api.stop();
      mode = "audio";
      api.settings.player.playerMode = alphaTab.PlayerMode.EnabledExternalMedia;
      api.updateSettings();
    }
    const same = media.dataset.source === url;
    if (!same) {
      media.pause();
      media.dataset.source = url;
      media.src = url;
      media.preservesPitch = true;
    }
    whenReady(() => {
      attachHandler();
      api.loadMidiForScore();
      const resume = () => {
        setSpeed(Number(el.speed.value));
        seekAudio(Math.max(0, t));
        if (loop) setLoop(true);
        if (wasPlaying) api.play();
        showTime();
      };
      if (same || media.readyState >= 1) resume(); else media.addEventListener("loadedmetadata", resume, { once: true });
    });
    showNotes();
  }

  function whenReady(fn) {
    if (api && api.isReadyForPlayback) fn(); else readyWaiters.push(fn);
  }

  // -- rendering --------------------------------------------------------------------------------

  function fmt(t) {
    const m = Math.floor(t / 60);
    return `${m}:${(t - 60 * m).toFixed(1).padStart(4, "0")}`;
  }

  function showTime() {
    if (!api || !score) return;
    const t = mode === "audio" ? media.currentTime : tickToAudio(api.tickPosition);
    const bar = barAt(audioToTick(t));
    el.time.textContent = `${fmt(t)} / ${fmt(data.duration || media.duration || 0)} · bar ${bar.index + 1}`;
    el.play.textContent = playing() ? "Pause" : "Play";
  }

  function note(text) {
    el.message.textContent = text || "";
    el.message.hidden = !text;
  }

  function showNotes() {
    const lines = [];
    if (!data.final) {
      const until = Object.entries(data.final_until).map(([p, t]) => `${p} to ${t.toFixed(1)} s`).join(", ");
      lines.push(`Draft: the notes final so far (${until || "none yet"}); the tab grows as the song is processed.`);
    }
    const current = el.source.value;
    if (current.startsWith("no-") && data.backing_tracks) {
      const info = data.backing_tracks[current.slice(3)];
      if (info && info.fallback) lines.push(`This backing track comes from the DSP fallback separator (no Demucs weights): ${info.note}.`);
    }
    if (mode === "synth") lines.push("Synthesised parts (alphaTab's synthesiser, sonivox soundfont); mute and solo act on them.");
    else lines.push("Over the recording, mute one part to hear the song without it; solo acts on the synthesised parts.");
    el.notes.textContent = lines.join(" ");
  }

  function buildTracks(score) {
    const before = new Map(trackState().map((t) => [t.name, t]));
    el.tracks.innerHTML = "";
    score.tracks.forEach((track, index) => {
      const row = document.createElement("span");
      row.className = "pl-track";
      row.dataset.track = index;
      row.dataset.name = track.name;
      row.innerHTML = `<strong></strong> <label><input type="checkbox" class="pl-mute"> mute</label>
        <label><input type="checkbox" class="pl-solo"> solo</label>`;
      row.querySelector("strong").textContent = track.name;
      const old = before.get(track.name);
      if (old) {
        row.querySelector(".pl-mute").checked = old.mute;
        row.querySelector(".pl-solo").checked = old.solo;
      }
      row.querySelectorAll("input").forEach((i) => i.addEventListener("change", applyTracks));
      el.tracks.appendChild(row);
    });
  }

  function createApi() {
    const settings = new alphaTab.Settings();
    settings.fillFromJson({
      core: { fontDirectory: BASE + "font/", scriptFile: BASE + "alphaTab.js" },
      display: { layoutMode: "page", staveProfile: "scoretab", scale: 0.85 },
      player: {
        playerMode: alphaTab.PlayerMode.EnabledExternalMedia,
        soundFont: BASE + "soundfont/sonivox.sf2",
        scrollElement: el.viewport,
        enableCursor: true,
        enableAnimatedBeatCursor: true,
        enableUserInteraction: true,
      },
    });
    // Velocities become dynamics in a GP5; over every note they hide the music.
    settings.notation.elements.set(alphaTab.NotationElement.EffectDynamics, false);
    api = new alphaTab.AlphaTabApi(el.score, settings);
    api.playerReady.on(() => {
      attachHandler();
      const waiting = readyWaiters;
      readyWaiters = [];
      waiting.forEach((fn) => fn());
    });
    api.playerStateChanged.on(() => { showTime(); if (playing()) startTicking(); });
    api.playerPositionChanged.on(() => { if (mode === "synth") showTime(); });
    api.renderFinished.on(() => el.root.classList.remove("pl-loading"));
    api.error.on((err) => note(`Tab player error: ${err && err.message ? err.message : err}`));
  }

  function bind(root) {
    el.root = root;
    for (const [key, id] of Object.entries({
      play: "pl-play", stop: "pl-stop", source: "pl-source", speed: "pl-speed", speedOut: "pl-speed-out",
      countIn: "pl-countin", metronome: "pl-metronome", loop: "pl-loop", loopFrom: "pl-loop-from",
      loopTo: "pl-loop-to", time: "pl-time", tracks: "pl-tracks", viewport: "pl-viewport", score: "pl-score",
      message: "pl-message", notes: "pl-notes", media: "pl-audio",
    })) el[key] = document.getElementById(id);
    media = el.media;
    media.preservesPitch = true;
    el.play.addEventListener("click", () => (playing() || countingIn ? pause() : play()));
    el.stop.addEventListener("click", () => {
      pause();
      if (mode === "audio") seekAudio(loop ? loopTimes()[0] : 0); else api.stop();
      showTime();
    });
    el.source.addEventListener("change", () => useSource(el.source.value));
    el.speed.addEventListener("input", () => setSpeed(Number(el.speed.value)));
    el.loop.addEventListener("change", () => setLoop(el.loop.checked));
    for (const input of [el.loopFrom, el.loopTo]) input.addEventListener("change", () => { if (el.loop.checked) setLoop(true); });
    media.addEventListener("play", startTicking);
    // The recording stopped by itself (not by alphaTab, and not a stale event of a pause
    // that a play already undid): alphaTab stops too.
    media.addEventListener("pause", () => {
      showTime();
      if (media.paused && mode === "audio" && api && api.playerState === alphaTab.synth.PlayerState.Playing) api.pause();
    });
    media.addEventListener("seeked", () => { if (mode === "audio") tick(); });
    media.addEventListener("ended", () => { if (api && mode === "audio") api.pause(); });
  }

  /**
   * Show (or refresh) the player for a job's /player data.
   * @param {HTMLElement} root the player's section
   * @param {object} playerData GET /v1/jobs/{id}/player
   */
  async function show(root, playerData) {
    if (!el.root) bind(root);
    await loadScript();
    const first = !api;
    if (first) createApi();
    if (playing()) pause();
    data = playerData;
    knots = { audio: data.beats || [], score: data.score_beats || data.beats || [] };
    const bytes = Uint8Array.from(atob(data.gp5), (c) => c.charCodeAt(0));
    score = alphaTab.importer.ScoreLoader.loadScoreFromBytes(bytes, api.settings);
    const pad = /tabagent-pickup-ticks: (\d+)/.exec(score.notices || "");
    padTicks = pad ? Number(pad[1]) : 0;
    score.applyFlatSyncPoints(syncPoints());
    addChords();
    for (const bar of score.masterBars) for (const a of bar.tempoAutomations) a.text = "";   // just "♩ = 100"
    fillSources();
    buildTracks(score);
    el.loopTo.max = el.loopFrom.max = score.masterBars.length;
    if (!el.loopTo.value) el.loopTo.value = Math.min(4, score.masterBars.length);
    if (!el.loopFrom.value) el.loopFrom.value = 1;
    root.classList.add("pl-loading");
    api.renderScore(score);
    if (first || (el.source.value !== "synth" && media.dataset.source !== (data.audio[el.source.value] || data.audio.original))) {
      if (el.source.value === "synth") useSource("synth"); else useSource(el.source.value || "original", false);
    } else {
      whenReady(() => { applyTracks(); if (loop) setLoop(true); });
    }
    showNotes();
    showTime();
  }

  /** What the page and the browser tests read: the player's state right now. */
  function state() {
    if (!api || !score) return { ready: false };
    const tickNow = api.tickPosition;
    // The beat under the cursor in the first track, and when the recording plays it.
    const found = api.tickCache ? api.tickCache.findBeat(new Set([0]), tickNow) : null;
    const beat = found ? { start: tickToAudio(found.start), end: tickToAudio(found.end) } : null;
    return {
      ready: !!api.isReadyForPlayback,
      mode,
      source: el.source.value,
      playing: playing(),
      speed: api.playbackSpeed,
      mediaTime: media.currentTime,
      mediaRate: media.playbackRate,
      preservesPitch: media.preservesPitch,
      mediaSrc: media.currentSrc,
      tick: tickNow,
      tickTime: tickToAudio(tickNow),
      beat,
      bars: score.masterBars.length,
      tracks: score.tracks.map((t) => ({ name: t.name, mute: t.playbackInfo.isMute, solo: t.playbackInfo.isSolo })),
      loop: loop ? { ...loop, times: loopTimes() } : null,
      syncPoints: score.exportFlatSyncPoints().length,
      countingIn: !!countingIn,
      clicks: clickCount,
    };
  }

  return { show, state, play, pause, playing, seek: seekAudio, useSource, setSpeed, setLoop, tickToAudio };
})();
