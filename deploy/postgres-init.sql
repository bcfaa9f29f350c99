-- Two databases on one PostgreSQL server: Dagster's storage and the hub's queue (FLIP's schema).
CREATE DATABASE dagster;
CREATE DATABASE flip;
