-- Shared by every current-state table: the runner puts this in front of <table>.sql, with
-- {object_type} and {raw_table} filled in. It yields `current_state`: the newest observation
-- of each object, whether, when and how it was deleted, and when and how we last saw it.

WITH ranked AS (
    -- Every observation of an object (listed, retrieved, from an event or a batch), newest
    -- first: an older observation never replaces a newer one, whatever order they loaded in.
    SELECT
        *,
        ROW_NUMBER() OVER (
            PARTITION BY id ORDER BY _observed_at DESC, _observed_order DESC
        ) AS observation_rank
    FROM stripe_raw.{raw_table}
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
        COALESCE(
            o.created >= l.created_from AND (
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
    FROM (SELECT * FROM ranked WHERE observation_rank = 1) AS o
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
            _observed_at, _observed_order, _observed_via, _observation_key, _api_version
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
