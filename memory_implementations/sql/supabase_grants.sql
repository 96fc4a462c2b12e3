-- The table grants Supabase gives its API roles by default, for plain PostgreSQL.
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
-- anon gets the table privileges too, as on Supabase: with no policy for anon, RLS (not a missing
-- grant) is what returns it nothing, so the isolation tests exercise the same rule as production.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO anon, authenticated, service_role;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO anon, authenticated, service_role;
