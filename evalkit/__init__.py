"""The evaluation kit: audio with known notes, ground-truth fingerings and the scores.

Synthesised songs (`synth`, `examples`), fingering corpora (`fingering_corpus`, the
human tabs of `tabcorpus`), onset F1 and string collisions (`scoring`) and the offline
transcriber evaluation (`transcriber_eval`). Tests and bench/ use it; the services never
import it.
"""
