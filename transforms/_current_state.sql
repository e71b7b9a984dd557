-- Shared by every current-state table: the runner puts this in front of <table>.sql, with
-- {object_type}, {raw_table} and the per-field lists (from the raw table's columns) filled in.
-- It yields `current_state`: the newest observation of each object, each field as last
-- observed, whether, when and how it was deleted, and when and how we last saw it.

WITH observations AS (
    -- Every observation of an object (listed, retrieved, from an event or a batch), newest
    -- first: an older observation never replaces a newer one, whatever order they loaded in.
    SELECT
        *,
        ROW_NUMBER() OVER (
            PARTITION BY id ORDER BY _observed_at DESC, _observed_order DESC
        ) AS observation_rank
    FROM stripe_raw.{raw_table}
),

patched AS (
    -- Every observation of the objects whose newest observation is a batch item with only
    -- some fields (a patch, carrying those named in `_patched_fields`; any other observation
    -- carries them all), with the rank of the newest observation carrying each field.
    -- The runner writes the list from the raw table's columns; for each field f:
    --   CAST(MIN(CASE WHEN _patched_fields IS NULL OR STRPOS(_patched_fields, '"f"') > 0
    --       THEN observation_rank END) OVER (PARTITION BY id) AS INT) AS f__carrier
    SELECT *, {field_carriers}
    FROM observations
    WHERE id IN (
        SELECT id FROM observations WHERE observation_rank = 1 AND _patched_fields IS NOT NULL
    )
),

newest AS (
    -- The newest observation of each object. A patch gets every other field from the newest
    -- observation carrying it (a field nobody observed stays null): the runner writes the list,
    -- id and the observation's own `_` columns as they are, and for each field f:
    --   NTH_VALUE(f, f__carrier) OVER (PARTITION BY id ORDER BY observation_rank
    --       ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS f
    SELECT * FROM observations
    WHERE observation_rank = 1 AND _patched_fields IS NULL
    UNION ALL
    SELECT * FROM (SELECT {field_values}, observation_rank FROM patched) AS resolved
    WHERE observation_rank = 1
),

tombstones AS (
    -- Deletions: from *.deleted events, 404 on retrieve, batches and manual soft deletes.
    SELECT
        object_id,
        deleted_at,
        source,
        reason,
        _observed_at,
        _observed_order,
        ROW_NUMBER() OVER (
            PARTITION BY object_id ORDER BY _observed_at DESC, _observed_order DESC
        ) AS tombstone_rank
    FROM stripe_raw.deletions
    WHERE object_type = '{object_type}'
),

last_listing AS (
    -- The newest complete listing of every object: one last seen before it started is gone.
    SELECT started_at, started_order, created_from
    FROM stripe_raw.full_listings
    WHERE object_type = '{object_type}'
    ORDER BY started_at DESC, started_order DESC
    LIMIT 1
),

as_of AS (
    -- Stripe's clock at the last sync, for what changes with time alone (expiry).
    SELECT MAX(server_time) AS synced_until FROM stripe_raw.sync_runs
),

verdicts AS (
    SELECT
        o.* EXCLUDE (observation_rank) REPLACE (COALESCE(o.id, t.object_id) AS id),
        -- A tombstone newer than the newest observation wins; a later observation (the object
        -- came back) clears it. Within one second, the tombstone wins.
        t.object_id IS NOT NULL AND (
            o.id IS NULL
            OR t._observed_at > o._observed_at
            OR (t._observed_at = o._observed_at AND t._observed_order >= o._observed_order)
        ) AS tombstone_wins,
        -- An object whose `created` nobody observed yet (a batch patch) counts as listable.
        COALESCE(
            COALESCE(o.created, l.created_from) >= l.created_from AND (
                l.started_at > o._observed_at
                OR (l.started_at = o._observed_at AND l.started_order > o._observed_order)
            ),
            FALSE
        ) AS missing_from_listing,
        t.deleted_at AS tombstone_deleted_at,
        t.source AS tombstone_source,
        t.reason AS tombstone_reason,
        l.started_at AS listing_started_at,
        a.synced_until
    FROM newest AS o
    FULL OUTER JOIN (SELECT * FROM tombstones WHERE tombstone_rank = 1) AS t
        ON t.object_id = o.id
    LEFT JOIN last_listing AS l ON TRUE
    CROSS JOIN as_of AS a
),

current_state AS (
    SELECT
        v.* EXCLUDE (
            tombstone_wins, missing_from_listing, tombstone_deleted_at, tombstone_source,
            tombstone_reason, listing_started_at,
            _observed_at, _observed_order, _observed_via, _observation_key, _api_version,
            _patched_fields
        ),
        v.tombstone_wins OR v.missing_from_listing AS is_deleted,
        CAST(
            to_timestamp(
                CASE
                    WHEN v.tombstone_wins THEN v.tombstone_deleted_at
                    WHEN v.missing_from_listing THEN v.listing_started_at
                END
            ) AS TIMESTAMPTZ
        ) AS deleted_at,
        CASE
            WHEN v.tombstone_wins THEN v.tombstone_source
            WHEN v.missing_from_listing THEN 'full_listing'
        END AS deletion_source,
        CASE WHEN v.tombstone_wins THEN v.tombstone_reason END AS deletion_reason,
        CAST(to_timestamp(v._observed_at) AS TIMESTAMPTZ) AS synced_at,
        v._observed_via AS observed_via
    FROM verdicts AS v
)
