"""Tab Agent's transcriber service: Basic Pitch (ONNX) notes, streamed, post-processed and fingered.

Modules, in the order audio flows through them: `streaming` (model windows),
`model` and `runner` (the warm ONNX model, batched across streams), `decoder` and
`notecreation` (Basic Pitch's note creation, incremental), `postprocess` (per instrument),
`pipeline` (one stream's path), `request` (a stream's config), `server` and `config`
(the gRPC service), `evaluate` (onset F1 against known notes).
"""
