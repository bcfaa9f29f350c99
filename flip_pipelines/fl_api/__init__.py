"""The FL API: one HTTP service per net (FLIP's contract), its backends, and the base applications."""
