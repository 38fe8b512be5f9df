"""`flow import-original`: move a site from the original service's PostgreSQL."""
