-- Shared by every current-state table: the runner puts this in front of <table>.sql, with
-- {object_type}, {raw_table} and the per-field lists (from the raw table's columns) filled in.
-- It yields `current_state`: the newest observation of each object, each field as last
-- observed, whether, when and how it was deleted, and when and how we last saw it. An object
-- is its account and its id (Stripe Connect): the same id in two accounts is two objects.
-- Every row of the raw table is one observation (a listing, a retrieve, an event, a batch
-- item, a 404, a manual soft delete); docs/OBSERVATIONS.md explains the columns and the order.

WITH observations AS (
    -- Every observation of an object, newest first: by Stripe's second, then the rank of the
    -- kind of observation within a second (1 read, 2 event, 3 deletion), then the sequence
    -- within a rank. An older observation never replaces a newer one, whatever order they
    -- loaded in.
    SELECT
        *,
        ROW_NUMBER() OVER (
            PARTITION BY account_id, id
            ORDER BY _observed_at DESC, _observed_rank DESC, _observed_sequence DESC
        ) AS observation_rank
    FROM stripe_raw.{raw_table}
),

patched AS (
    -- Every observation of the objects whose newest observation carries only some fields (a
    -- batch patch, carrying those named in `_patched_fields`; a tombstone carries none; any
    -- other observation carries them all), with the rank of the newest observation carrying
    -- each field. The runner writes the list from the raw table's columns; for each field f:
    --   CAST(MIN(CASE WHEN _patched_fields IS NULL OR STRPOS(_patched_fields, '"f"') > 0
    --       THEN observation_rank END) OVER (PARTITION BY account_id, id) AS INT) AS f__carrier
    SELECT *, {field_carriers}
    FROM observations
    WHERE (account_id, id) IN (
        SELECT account_id, id
        FROM observations
        WHERE observation_rank = 1 AND _patched_fields IS NOT NULL
    )
),

newest AS (
    -- The newest observation of each object. A partial one gets every other field from the
    -- newest observation carrying it (a field nobody observed stays null): the runner writes
    -- the list, id and the observation's own `_` columns as they are, and for each field f:
    --   NTH_VALUE(f, f__carrier) OVER (PARTITION BY account_id, id ORDER BY observation_rank
    --       ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS f
    SELECT * FROM observations
    WHERE observation_rank = 1 AND _patched_fields IS NULL
    UNION ALL
    SELECT * FROM (SELECT {field_values}, observation_rank FROM patched) AS resolved
    WHERE observation_rank = 1
),

last_listing AS (
    -- Each account's newest complete listing of every object: one last observed before it
    -- started is gone. The listing started as a read: an event or a deletion of its second
    -- is newer.
    SELECT account_id, started_at, started_sequence, created_from
    FROM (
        SELECT
            account_id, started_at, started_sequence, created_from,
            ROW_NUMBER() OVER (
                PARTITION BY account_id ORDER BY started_at DESC, started_sequence DESC
            ) AS newest
        FROM stripe_raw.full_listings
        WHERE object_type = '{object_type}'
    ) AS listings
    WHERE newest = 1
),

as_of AS (
    -- Stripe's clock at the last sync, for what changes with time alone (expiry).
    SELECT MAX(server_time) AS synced_until FROM stripe_raw.sync_runs
),

verdicts AS (
    SELECT
        o.* EXCLUDE (observation_rank),
        COALESCE(o._deleted, FALSE) AS observed_deleted,
        -- An object whose `created` nobody observed yet (a batch patch) counts as listable.
        COALESCE(
            COALESCE(o.created, l.created_from) >= l.created_from AND (
                l.started_at > o._observed_at
                OR (
                    l.started_at = o._observed_at
                    AND o._observed_rank = 1
                    AND l.started_sequence > o._observed_sequence
                )
            ),
            FALSE
        ) AS missing_from_listing,
        l.started_at AS listing_started_at,
        a.synced_until
    FROM newest AS o
    LEFT JOIN last_listing AS l ON l.account_id = o.account_id
    CROSS JOIN as_of AS a
),

current_state AS (
    SELECT
        v.account_id,
        v.* EXCLUDE (
            account_id, observed_deleted, missing_from_listing, listing_started_at,
            _observed_at, _observed_rank, _observed_sequence, _observed_via, _observation_key,
            _api_version, _patched_fields,
            _deleted, _deleted_at, _deletion_source, _deletion_reason
        ),
        v.observed_deleted OR v.missing_from_listing AS is_deleted,
        CAST(
            to_timestamp(
                CASE
                    WHEN v.observed_deleted THEN v._deleted_at
                    WHEN v.missing_from_listing THEN v.listing_started_at
                END
            ) AS TIMESTAMPTZ
        ) AS deleted_at,
        CASE
            WHEN v.observed_deleted THEN v._deletion_source
            WHEN v.missing_from_listing THEN 'full_listing'
        END AS deletion_source,
        CASE WHEN v.observed_deleted THEN v._deletion_reason END AS deletion_reason,
        CAST(to_timestamp(v._observed_at) AS TIMESTAMPTZ) AS synced_at,
        v._observed_via AS observed_via
    FROM verdicts AS v
)
