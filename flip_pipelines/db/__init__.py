"""The training-queue database: FLIP's tables, engines, migrations and state transitions."""
