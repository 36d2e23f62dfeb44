"""The content catalog: tables, engine, queries, seeding and import."""
