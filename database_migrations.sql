-- memory_implementations schema. Idempotent: running it twice changes nothing and raises nothing.
-- Apply with:  psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f database_migrations.sql
-- or:          memory-orchestrator migrate --dsn "$DATABASE_URL" [--embedding-dim N]
-- The embedding column is vector(1536) here; `migrate --embedding-dim N` rewrites that one type.
-- Row Level Security follows Supabase: auth.uid()::text = user_id; service_role bypasses RLS.
-- This file creates nothing in the `auth` schema (hosted Supabase refuses that).

CREATE EXTENSION IF NOT EXISTS vector;
-- gen_random_uuid() is built into PostgreSQL 13+; pgcrypto is added where the server ships it
-- (Supabase does), and skipped quietly where it does not (minimal builds).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto') THEN
        CREATE EXTENSION IF NOT EXISTS pgcrypto;
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS memory_schema_version (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- Conversation messages: the durable record of the buffer and summary tiers. Never deleted by
-- summarisation; only by clear()/forget().
CREATE TABLE IF NOT EXISTS memory_messages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     text NOT NULL,
    session_id  text NOT NULL,
    role        text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content     text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    token_count integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS memory_messages_session_idx ON memory_messages (user_id, session_id, id);
-- finds a session's owner when a caller gives only the session id (the seed's get_context call)
CREATE INDEX IF NOT EXISTS memory_messages_session_only_idx ON memory_messages (session_id);

-- Progressive summaries: versioned, each covering messages [covers_from_id, covers_to_id].
CREATE TABLE IF NOT EXISTS memory_summaries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         text NOT NULL,
    session_id      text NOT NULL,
    version         integer NOT NULL,
    summary         text NOT NULL,
    covers_from_id  bigint,
    covers_to_id    bigint NOT NULL,
    message_count   integer NOT NULL DEFAULT 0,
    token_count     integer NOT NULL DEFAULT 0,
    model           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, session_id, version)
);

-- Semantic memories (vector tier).
CREATE TABLE IF NOT EXISTS memory_vectors (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      text NOT NULL,
    session_id   text,
    namespace    text NOT NULL DEFAULT 'default',
    content      text NOT NULL,
    content_hash text NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
    embedding    vector(1536) NOT NULL,
    embedding_model text,
    fts          tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, namespace, content_hash)
);
CREATE INDEX IF NOT EXISTS memory_vectors_embedding_hnsw
    ON memory_vectors USING hnsw (embedding vector_cosine_ops);
CREATE INDEX IF NOT EXISTS memory_vectors_user_idx ON memory_vectors (user_id, namespace, created_at);
CREATE INDEX IF NOT EXISTS memory_vectors_fts_idx ON memory_vectors USING gin (fts);
-- searched on every turn: no pending list (fastupdate) for every search to scan until a vacuum
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'memory_vectors_fts_idx'
                   AND relnamespace = current_schema()::regnamespace
                   AND 'fastupdate=off' = ANY (coalesce(reloptions, '{}'))) THEN
        ALTER INDEX memory_vectors_fts_idx SET (fastupdate = off);
        PERFORM gin_clean_pending_list('memory_vectors_fts_idx'::regclass);
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS memory_vectors_metadata_idx ON memory_vectors USING gin (metadata jsonb_path_ops);

-- Key-value records (current value) and their superseded history.
CREATE TABLE IF NOT EXISTS memory_kv (
    user_id    text NOT NULL,
    namespace  text NOT NULL,
    key        text NOT NULL,
    value      jsonb NOT NULL,
    version    integer NOT NULL DEFAULT 1,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, namespace, key)
);
CREATE TABLE IF NOT EXISTS memory_kv_history (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       text NOT NULL,
    namespace     text NOT NULL,
    key           text NOT NULL,
    value         jsonb NOT NULL,
    version       integer NOT NULL,
    valid_from    timestamptz NOT NULL,
    superseded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS memory_kv_history_key_idx ON memory_kv_history (user_id, namespace, key, version);

-- Entities, their aliases, attribute history and relationships.
CREATE TABLE IF NOT EXISTS memory_entities (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         text NOT NULL,
    name            text NOT NULL,
    normalized_name text NOT NULL,
    entity_type     text NOT NULL,
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    mention_count   integer NOT NULL DEFAULT 1,
    importance      real NOT NULL DEFAULT 0,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    last_seen       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, normalized_name)
);
CREATE TABLE IF NOT EXISTS memory_entity_aliases (
    user_id          text NOT NULL,
    entity_id        uuid NOT NULL REFERENCES memory_entities (id) ON DELETE CASCADE,
    alias            text NOT NULL,
    normalized_alias text NOT NULL,
    PRIMARY KEY (user_id, normalized_alias)
);
CREATE TABLE IF NOT EXISTS memory_entity_attribute_history (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id           text NOT NULL,
    entity_id         uuid NOT NULL REFERENCES memory_entities (id) ON DELETE CASCADE,
    attribute         text NOT NULL,
    value             jsonb NOT NULL,
    valid_from        timestamptz NOT NULL,
    superseded_at     timestamptz NOT NULL DEFAULT now(),
    source_message_id bigint
);
CREATE TABLE IF NOT EXISTS memory_entity_relationships (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             text NOT NULL,
    source_entity_id    uuid NOT NULL REFERENCES memory_entities (id) ON DELETE CASCADE,
    target_entity_id    uuid NOT NULL REFERENCES memory_entities (id) ON DELETE CASCADE,
    relation_type       text NOT NULL,
    weight              real NOT NULL DEFAULT 1,
    evidence_message_id bigint,
    evidence            text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, source_entity_id, target_entity_id, relation_type)
);
CREATE INDEX IF NOT EXISTS memory_entities_importance_idx ON memory_entities (user_id, importance DESC);

-- API keys of the HTTP service (hashed; the key itself is shown once). Service role only.
CREATE TABLE IF NOT EXISTS memory_api_keys (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    text NOT NULL DEFAULT '*',
    name       text NOT NULL DEFAULT '',
    key_hash   text NOT NULL UNIQUE,
    prefix     text NOT NULL,
    users      text[] NOT NULL DEFAULT '{}',
    is_admin   boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS memory_api_keys_prefix_idx ON memory_api_keys (prefix);

-- Filtered similarity search, callable directly and through Supabase's REST `.rpc()`.
-- SECURITY INVOKER: RLS applies to the caller. Iterative HNSW scans keep filtered searches full.
-- The top `match_count` rows by distance are taken first (ORDER BY ... LIMIT) and the threshold is
-- applied to those: filtering inside the ordered scan would make an iterative HNSW scan walk the
-- whole tenant when no row passes it. hnsw.ef_search is raised (never lowered) to cover match_count,
-- at least 100, for the rest of the caller's transaction (one statement in autocommit), so a search
-- needs no separate SET: one round trip.
CREATE OR REPLACE FUNCTION match_memories(
    query_embedding  vector(1536),
    match_threshold  double precision DEFAULT 0.0,
    match_count      integer DEFAULT 5,
    filter           jsonb DEFAULT '{}'::jsonb,
    p_user_id        text DEFAULT NULL,
    p_namespace      text DEFAULT NULL,
    p_session_id     text DEFAULT NULL,
    created_after    timestamptz DEFAULT NULL,
    created_before   timestamptz DEFAULT NULL
)
RETURNS TABLE (
    id uuid, user_id text, session_id text, namespace text, content text, metadata jsonb,
    similarity double precision, created_at timestamptz, updated_at timestamptz
)
LANGUAGE sql STABLE SECURITY INVOKER
SET hnsw.iterative_scan = 'relaxed_order'
-- always planned for the caller's tenant: a cached generic plan cannot tell a 40-row tenant from a
-- 100,000-row one and picks the per-user index with an exact sort (8 ms at 5,000 rows, 170 ms at 100,000)
SET plan_cache_mode = 'force_custom_plan'
AS $$
    SELECT set_config('hnsw.ef_search', greatest(100, match_count,
               coalesce(nullif(current_setting('hnsw.ef_search', true), '')::integer, 0))::text, true);
    SELECT t.id, t.user_id, t.session_id, t.namespace, t.content, t.metadata,
           t.similarity, t.created_at, t.updated_at
    FROM (
        SELECT m.id, m.user_id, m.session_id, m.namespace, m.content, m.metadata,
               1 - (m.embedding <=> query_embedding) AS similarity, m.created_at, m.updated_at,
               m.embedding <=> query_embedding AS distance
        FROM memory_vectors m
        WHERE (p_user_id IS NULL OR m.user_id = p_user_id)
          AND (p_namespace IS NULL OR m.namespace = p_namespace)
          AND (p_session_id IS NULL OR m.session_id = p_session_id)
          AND (filter IS NULL OR filter = '{}'::jsonb OR m.metadata @> filter)
          AND (created_after IS NULL OR m.created_at >= created_after)
          AND (created_before IS NULL OR m.created_at < created_before)
        ORDER BY m.embedding <=> query_embedding
        LIMIT match_count
    ) t
    WHERE t.similarity >= match_threshold
    ORDER BY t.distance;
$$;

-- Hybrid retrieval in one round trip: the dense top-N (HNSW) and the full-text top-N (GIN), fused by
-- weighted reciprocal rank (score = dense_weight/(rrf_k + dense rank) + text_weight/(rrf_k + text rank)).
-- `query_text` is a websearch_to_tsquery input that selects the full-text rows, `rank_text` (default
-- query_text) the words they are ranked by: the sum of the idf of the words a row contains. Each leg
-- offers greatest(match_count, 20) rows. The threshold applies to the dense leg only: a row the
-- full-text leg found is kept whatever its similarity. p_user_id is required (one tenant's rows: the
-- (user_id, ...) index bounds every leg). Callable as .rpc("match_memories_hybrid").
CREATE OR REPLACE FUNCTION match_memories_hybrid(
    query_embedding  vector(1536),
    query_text       text,
    match_threshold  double precision DEFAULT 0.0,
    match_count      integer DEFAULT 10,
    filter           jsonb DEFAULT '{}'::jsonb,
    p_user_id        text DEFAULT NULL,
    p_namespace      text DEFAULT NULL,
    p_session_id     text DEFAULT NULL,
    created_after    timestamptz DEFAULT NULL,
    created_before   timestamptz DEFAULT NULL,
    rank_text        text DEFAULT NULL,
    dense_weight     double precision DEFAULT 1.0,
    text_weight      double precision DEFAULT 1.0,
    rrf_k            integer DEFAULT 60
)
RETURNS TABLE (
    id uuid, user_id text, session_id text, namespace text, content text, metadata jsonb,
    similarity double precision, text_rank double precision, dense_rank integer, lexical_rank integer,
    score double precision, created_at timestamptz, updated_at timestamptz
)
LANGUAGE sql STABLE SECURITY INVOKER
SET hnsw.iterative_scan = 'relaxed_order'
-- always planned for the caller's tenant: a cached generic plan cannot tell a 40-row tenant from a
-- 100,000-row one and picks the per-user index with an exact sort (8 ms at 5,000 rows, 170 ms at 100,000)
SET plan_cache_mode = 'force_custom_plan'
AS $$
    SELECT set_config('hnsw.ef_search', greatest(100, match_count,
               coalesce(nullif(current_setting('hnsw.ef_search', true), '')::integer, 0))::text, true);
    -- each leg offers at least 20 rows, so a small match_count still fuses two real rankings
    WITH dense AS (
        SELECT t.id, t.similarity, row_number() OVER (ORDER BY t.distance)::integer AS r
        FROM (
            SELECT m.id, 1 - (m.embedding <=> query_embedding) AS similarity,
                   m.embedding <=> query_embedding AS distance
            FROM memory_vectors m
            WHERE m.user_id = p_user_id
              AND (p_namespace IS NULL OR m.namespace = p_namespace)
              AND (p_session_id IS NULL OR m.session_id = p_session_id)
              AND (filter IS NULL OR filter = '{}'::jsonb OR m.metadata @> filter)
              AND (created_after IS NULL OR m.created_at >= created_after)
              AND (created_before IS NULL OR m.created_at < created_before)
            ORDER BY m.embedding <=> query_embedding
            LIMIT greatest(match_count, 20)
        ) t
        WHERE t.similarity >= match_threshold
    ),
    -- the full-text leg: the rows `query_text` matches, ranked by the summed inverse document frequency
    -- (BM25's idf; document frequencies among the tenant's matched rows) of the `rank_text` words each
    -- contains: a word every memory contains ranks little, a rare name or number ranks high. One index
    -- scan; MATERIALIZED keeps the per-word counts from being re-run per row.
    -- at most 5,000 matching rows are read: a tenant with 100,000 memories does not pay for a word
    -- that is in a third of them (the similarity leg still ranks the rest)
    matched AS MATERIALIZED (
        SELECT m.id, m.created_at, m.fts
        FROM memory_vectors m, websearch_to_tsquery('english', coalesce(query_text, '')) mq
        WHERE coalesce(query_text, '') <> '' AND m.fts @@ mq
              AND m.user_id = p_user_id
              AND (p_namespace IS NULL OR m.namespace = p_namespace)
              AND (p_session_id IS NULL OR m.session_id = p_session_id)
              AND (filter IS NULL OR filter = '{}'::jsonb OR m.metadata @> filter)
              AND (created_after IS NULL OR m.created_at >= created_after)
              AND (created_before IS NULL OR m.created_at < created_before)
        LIMIT 5000
    ),
    -- N of the idf: the table's row estimate, as a search index's document count (counting the
    -- tenant's rows would read them all on every query)
    scope_size AS MATERIALIZED (
        SELECT greatest(c.reltuples, (SELECT count(*) FROM matched), 1000)::float8 AS total
        FROM pg_class c WHERE c.oid = 'memory_vectors'::regclass
    ),
    idf AS MATERIALIZED (
        SELECT t.tq, ln(1 + (n.total - d.df + 0.5) / (d.df + 0.5)) AS idf
        FROM (SELECT DISTINCT format('%L', w)::tsquery AS tq
              FROM unnest(tsvector_to_array(to_tsvector('english',
                       coalesce(nullif(rank_text, ''), query_text, '')))) w) t
        CROSS JOIN scope_size n
        CROSS JOIN LATERAL (SELECT count(*) AS df FROM matched x WHERE x.fts @@ t.tq) d
        WHERE d.df > 0
    ),
    lexical AS (
        SELECT x.id, sum(i.idf) AS text_rank,
               row_number() OVER (ORDER BY sum(i.idf) DESC, x.created_at DESC)::integer AS r
        FROM matched x JOIN idf i ON x.fts @@ i.tq
        GROUP BY x.id, x.created_at
        ORDER BY text_rank DESC, x.created_at DESC
        LIMIT greatest(match_count, 20)
    ),
    fused AS (
        SELECT coalesce(d.id, l.id) AS id, d.similarity, l.text_rank, d.r AS dense_rank, l.r AS lexical_rank,
               coalesce(dense_weight / (rrf_k + d.r), 0) + coalesce(text_weight / (rrf_k + l.r), 0) AS score
        FROM dense d FULL OUTER JOIN lexical l ON l.id = d.id
    )
    SELECT m.id, m.user_id, m.session_id, m.namespace, m.content, m.metadata,
           coalesce(f.similarity, 1 - (m.embedding <=> query_embedding)), f.text_rank, f.dense_rank,
           f.lexical_rank, f.score, m.created_at, m.updated_at
    FROM fused f JOIN memory_vectors m ON m.id = f.id
    ORDER BY f.score DESC, m.created_at DESC
    LIMIT match_count;
$$;

-- Row Level Security, Supabase style. `auth.uid()` exists on Supabase; on plain PostgreSQL the
-- migration runner installs a small emulation first.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['memory_messages', 'memory_summaries', 'memory_vectors', 'memory_kv',
                             'memory_kv_history', 'memory_entities', 'memory_entity_aliases',
                             'memory_entity_attribute_history', 'memory_entity_relationships']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = current_schema()
                       AND tablename = t AND policyname = 'tenant_isolation') THEN
            EXECUTE format(
                'CREATE POLICY tenant_isolation ON %I FOR ALL TO authenticated '
                'USING ((SELECT auth.uid())::text = user_id) WITH CHECK ((SELECT auth.uid())::text = user_id)', t);
        END IF;
    END LOOP;
    ALTER TABLE memory_api_keys ENABLE ROW LEVEL SECURITY;  -- no policy: service role only
    ALTER TABLE memory_schema_version ENABLE ROW LEVEL SECURITY;
END $$;

INSERT INTO memory_schema_version (version, description)
VALUES (1, 'initial schema: messages, summaries, vectors, kv, entities, api keys, match_memories, RLS')
ON CONFLICT (version) DO NOTHING;
INSERT INTO memory_schema_version (version, description)
VALUES (2, 'match_memories_hybrid: dense + full-text fused in one statement')
ON CONFLICT (version) DO NOTHING;
INSERT INTO memory_schema_version (version, description)
VALUES (3, 'search functions planned per call for the caller''s tenant (plan_cache_mode)')
ON CONFLICT (version) DO NOTHING;
