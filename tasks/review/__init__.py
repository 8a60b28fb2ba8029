"""The review page: takes and scores read from provenance (data), laid out as a grid, with loudness plots."""
