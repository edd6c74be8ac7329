// Loads a Guitar Pro file with TuxGuitar's own reader (the code its GUI opens files with)
// and prints what TuxGuitar sees, one fact per line, for tests/test_notation_apps.py:
//   song <tempo> <tracks> <measures>
//   measure <number> <numerator>/<denominator> <marker title or ->
//   track <number> <name> offset=<capo> strings=<open MIDI pitches, string 1 first>
//   note <track> <measure> <beat start tick> <string> <fret> <velocity> <effects> <chord name or ->
// Run as a single-file program: java -cp <TuxGuitar jars> TabCheck.java file.gp5
import java.io.FileInputStream;
import java.util.Iterator;
import org.herac.tuxguitar.io.base.TGSongReaderHandle;
import org.herac.tuxguitar.io.gtp.GP5InputStream;
import org.herac.tuxguitar.io.gtp.GTPSettings;
import org.herac.tuxguitar.song.factory.TGFactory;
import org.herac.tuxguitar.song.models.*;

public class TabCheck {
    public static void main(String[] args) throws Exception {
        TGSongReaderHandle handle = new TGSongReaderHandle();
        handle.setFactory(new TGFactory());
        try (FileInputStream in = new FileInputStream(args[0])) {
            handle.setInputStream(in);
            GP5InputStream reader = new GP5InputStream(new GTPSettings());
            reader.init(handle.getFactory());
            reader.read(handle);
        }
        TGSong song = handle.getSong();
        TGMeasureHeader first = song.getMeasureHeaders().next();
        System.out.println("song " + first.getTempo().getValue() + " " + song.countTracks() + " " + song.countMeasureHeaders());
        for (Iterator<TGMeasureHeader> it = song.getMeasureHeaders(); it.hasNext();) {
            TGMeasureHeader h = it.next();
            TGTimeSignature ts = h.getTimeSignature();
            String marker = h.getMarker() == null ? "-" : h.getMarker().getTitle().replace(' ', '_');
            System.out.println("measure " + h.getNumber() + " " + ts.getNumerator() + "/" + ts.getDenominator().getValue()
                + " " + marker + " tempo=" + h.getTempo().getValue());
        }
        for (Iterator<TGTrack> tracks = song.getTracks(); tracks.hasNext();) {
            TGTrack track = tracks.next();
            StringBuilder strings = new StringBuilder();
            for (TGString s : track.getStrings()) {
                strings.append(strings.length() == 0 ? "" : ",").append(s.getValue());
            }
            System.out.println("track " + track.getNumber() + " " + track.getName().replace(' ', '_') + " offset="
                + track.getOffset() + " strings=" + strings);
            for (Iterator<TGMeasure> measures = track.getMeasures(); measures.hasNext();) {
                TGMeasure measure = measures.next();
                for (TGBeat beat : measure.getBeats()) {
                    String chord = beat.isChordBeat() ? beat.getChord().getName().replace(' ', '_') : "-";
                    for (int v = 0; v < beat.countVoices(); v++) {
                        for (TGNote note : beat.getVoice(v).getNotes()) {
                            TGNoteEffect e = note.getEffect();
                            String fx = (e.isHammer() ? "h" : "") + (e.isSlide() ? "s" : "") + (e.isBend() ? "b" : "")
                                + (e.isVibrato() ? "v" : "") + (e.isLetRing() ? "r" : "");
                            System.out.println("note " + track.getNumber() + " " + measure.getNumber() + " " + beat.getStart()
                                + " " + note.getString() + " " + note.getValue() + " " + note.getVelocity() + " "
                                + (fx.isEmpty() ? "-" : fx) + " " + chord);
                        }
                    }
                }
            }
        }
    }
}
