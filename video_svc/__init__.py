"""The VideoRenderer service: an audio-synced tab play-along video, rendered and encoded as it streams."""
