// PostgreSQL state backend (issue 6, point 5) — being written.
