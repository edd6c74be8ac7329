"""Exports of fingered parts: ASCII tab, MIDI, Guitar Pro 5 and MusicXML with a TAB staff.

Every writer takes ``parts``, a mapping of part name -> (Tuning, notes), and the piece's
`tabagent.rhythm.Rhythm`. ASCII tab, Guitar Pro and MusicXML place notes on the rhythm's
constant-tempo grid (sixteenth notes by default), so reading them back gives the same
pitches, strings and frets with onsets within half a grid step; MIDI keeps exact times.
"""

from tabagent.exporters.ascii_tab import parse_ascii_tab, write_ascii_tab
from tabagent.exporters.gp5 import read_gp5, write_gp5
from tabagent.exporters.layout import PROGRAMS, Parts
from tabagent.exporters.midi import write_midi
from tabagent.exporters.musicxml import read_musicxml, write_musicxml

__all__ = [
    "PROGRAMS",
    "Parts",
    "parse_ascii_tab",
    "read_gp5",
    "read_musicxml",
    "write_ascii_tab",
    "write_gp5",
    "write_midi",
    "write_musicxml",
]
