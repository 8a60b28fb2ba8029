"""Audio math, pure numpy in and out: BS.1770 meters, the true-peak limiter, loudness targets and
normalisation, assembly with pauses and room tone, and WAV reading and writing."""
