"""Sweeps of decoding settings per voice: the grid plan, scoring the takes, adopting the winner into the
manifest."""
