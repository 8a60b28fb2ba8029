"""The audio format every stage works in."""

SAMPLE_RATE = 24_000  # Hz; every engine returns mono float32 at this rate, and every take and chapter is written at it
