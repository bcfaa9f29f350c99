"""FL framework backends behind the one FL-API contract."""
