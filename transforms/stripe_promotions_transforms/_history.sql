-- Shared by every history table: the runner puts this in front of <table>_history.sql, with
-- {object_type}, {raw_table} and the per-field lists (from the raw table's columns) filled in.
-- It yields `versions`: every state of each object the pipeline observed, oldest first, in
-- the shape of `current_state` (_current_state.sql), so that <table>.sql can derive the same
-- columns from it, plus when each version held. docs/HISTORY.md explains the rules;
-- docs/OBSERVATIONS.md the raw rows and their order.

WITH observations AS (
    -- Every observation of an object, oldest first, in the order of _current_state.sql:
    -- Stripe's second, then the rank of the kind of observation (1 read, 2 event, 3
    -- deletion), then the sequence within a rank. And each against the one before it: the
    -- fields whose value differs, as the text of a JSON array without its brackets (the
    -- runner writes the list; for each field f:
    --   CASE WHEN f IS DISTINCT FROM LAG(f) OVER w THEN ',"f"' ELSE '' END || ...),
    -- and whether it says something else about a deletion. For an object with a partial
    -- observation, `refilled` redoes these once its fields are filled in.
    SELECT
        *,
        ROW_NUMBER() OVER w AS observation_number,
        COUNT(*) OVER (
            w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) AS observation_count,
        COUNT(_patched_fields) OVER (
            w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) AS partial_count,
        LAST_VALUE(_observed_at) OVER (
            w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) AS last_observed_at,
        LAG(_observed_at) OVER w AS previous_observed_at,
        {compared_fields} AS compared_fields,
        (
            COALESCE(_deleted, FALSE) IS DISTINCT FROM LAG(COALESCE(_deleted, FALSE)) OVER w
            OR _deleted_at IS DISTINCT FROM LAG(_deleted_at) OVER w
            OR _deletion_source IS DISTINCT FROM LAG(_deletion_source) OVER w
            OR _deletion_reason IS DISTINCT FROM LAG(_deletion_reason) OVER w
        ) AS deletion_changed
    FROM stripe_raw.{raw_table}
    WINDOW w AS (
        PARTITION BY account_id, id
        ORDER BY _observed_at, _observed_rank, _observed_sequence, _observation_key
    )
),

carriers AS (
    -- The observations of objects with a partial one (a batch patch carries the fields named
    -- in `_patched_fields`, a tombstone none, an event all but those Stripe includes only on
    -- request), with, for each field, the number of the newest observation so far that
    -- carries it, and of the first one that does. The runner writes the list; for each f:
    --   MAX(CASE WHEN _patched_fields IS NULL OR STRPOS(_patched_fields, '"f"') > 0
    --       THEN observation_number END) OVER (PARTITION BY account_id, id
    --       ORDER BY observation_number ROWS UNBOUNDED PRECEDING) AS f__carrier,
    --   CAST(MIN(CASE WHEN ... THEN observation_number END) OVER (PARTITION BY account_id, id)
    --       AS INT) AS f__first
    SELECT *, {field_carriers}
    FROM observations
    WHERE partial_count > 0
),

refilled AS (
    -- Those observations as the whole object each shows: a field a partial observation does
    -- not carry is the one the newest observation before it carried, as _current_state.sql
    -- fills them; before any observation carried it, the first one that does (a creation
    -- event, which leaves out a coupon's applies_to, shows them as the listing after it). The
    -- runner writes the list, id and the `_` columns as they are, and for each field f:
    --   CASE WHEN f__carrier IS NULL THEN NTH_VALUE(f, f__first) OVER (PARTITION BY
    --       account_id, id ORDER BY observation_number ROWS BETWEEN UNBOUNDED PRECEDING AND
    --       UNBOUNDED FOLLOWING)
    --   ELSE FIRST_VALUE(f) OVER (PARTITION BY account_id, id, f__carrier
    --       ORDER BY observation_number) END AS f
    -- Then compared with the one before, as in `observations`.
    SELECT
        *,
        {compared_fields} AS compared_fields,
        (
            COALESCE(_deleted, FALSE) IS DISTINCT FROM LAG(COALESCE(_deleted, FALSE)) OVER w
            OR _deleted_at IS DISTINCT FROM LAG(_deleted_at) OVER w
            OR _deletion_source IS DISTINCT FROM LAG(_deletion_source) OVER w
            OR _deletion_reason IS DISTINCT FROM LAG(_deletion_reason) OVER w
        ) AS deletion_changed
    FROM (
        SELECT
            {field_values},
            observation_number, observation_count, partial_count, last_observed_at,
            previous_observed_at
        FROM carriers
    ) AS filled
    WINDOW w AS (PARTITION BY account_id, id ORDER BY observation_number)
),

states AS (
    SELECT * FROM observations WHERE partial_count = 0
    UNION ALL
    SELECT * FROM refilled
),

last_listing AS (
    -- Each account's newest complete listing of this type (as in _current_state.sql).
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

compared AS (
    -- Every observation, and for an object the newest listing did not list (the rule of
    -- _current_state.sql), one more: the object deleted at the listing's start.
    SELECT * FROM states
    UNION ALL
    SELECT
        o.* REPLACE (
            l.started_at AS _observed_at,
            'full_listing' AS _observed_via,
            'full_listing:absent' AS _observation_key,
            TRUE AS _deleted,
            l.started_at AS _deleted_at,
            'full_listing' AS _deletion_source,
            CAST(NULL AS TEXT) AS _deletion_reason,
            o.observation_number + 1 AS observation_number,
            l.started_at AS last_observed_at,
            o._observed_at AS previous_observed_at,
            '' AS compared_fields,
            TRUE AS deletion_changed
        )
    FROM states AS o
    JOIN last_listing AS l ON l.account_id = o.account_id
    WHERE
        o.observation_number = o.observation_count
        AND NOT COALESCE(o._deleted, FALSE)
        AND COALESCE(o.created, l.created_from) >= l.created_from
        AND (
            l.started_at > o._observed_at
            OR (
                l.started_at = o._observed_at
                AND o._observed_rank = 1
                AND l.started_sequence > o._observed_sequence
            )
        )
),

starts AS (
    -- The observations that start a version: the first of each object, and every one that
    -- shows a field or a deletion differing from the observation before it. Observations
    -- that differ only in how and when they were made (a re-read) belong to one version.
    SELECT
        *,
        ROW_NUMBER() OVER w AS version,
        LEAD(_observed_at) OVER w AS next_version_from,
        -- The last observation before the next version's start is this version's last.
        COALESCE(LEAD(previous_observed_at) OVER w, last_observed_at) AS last_seen_at
    FROM compared
    WHERE observation_number = 1 OR compared_fields <> '' OR deletion_changed
    WINDOW w AS (PARTITION BY account_id, id ORDER BY observation_number)
),

as_of AS (
    -- Stripe's clock at the last sync, for what changes with time alone (expiry).
    SELECT MAX(server_time) AS synced_until FROM stripe_raw.sync_runs
),

versions AS (
    -- One row per version, in the shape of `current_state` (its fields as observed, the
    -- deletion, synced_at and observed_via: when it was last seen and how it was first seen),
    -- and: version (1, 2... per object), valid_from and valid_to (Stripe's seconds; the next
    -- version's start, null for the current one), is_current, changed_fields, changed_after.
    SELECT
        v.account_id,
        v.* EXCLUDE (
            account_id, observation_number, observation_count, partial_count,
            last_observed_at, previous_observed_at, compared_fields, deletion_changed,
            version, next_version_from, last_seen_at, event_id, event_fields,
            _observed_at, _observed_rank, _observed_sequence, _observed_via, _observation_key,
            _api_version, _patched_fields,
            _deleted, _deleted_at, _deletion_source, _deletion_reason
        ),
        COALESCE(v._deleted, FALSE) AS is_deleted,
        CAST(to_timestamp(CASE WHEN v._deleted THEN v._deleted_at END) AS TIMESTAMPTZ)
            AS deleted_at,
        CASE WHEN v._deleted THEN v._deletion_source END AS deletion_source,
        CASE WHEN v._deleted THEN v._deletion_reason END AS deletion_reason,
        -- When the pipeline last saw this version hold.
        CAST(to_timestamp(v.last_seen_at) AS TIMESTAMPTZ) AS synced_at,
        v._observed_via AS observed_via,
        -- The event that reported this version: stripe_raw.events has its request.
        v.event_id,
        a.synced_until,
        v.version,
        v._observed_at AS valid_from,
        v.next_version_from AS valid_to,
        v.next_version_from IS NULL AS is_current,
        -- An event names the fields it changed (`previous_attributes`); otherwise (or when it
        -- names none of this table's), the fields that differ from the previous version
        -- (none before the first).
        CASE
            WHEN v.event_fields <> '' THEN CAST('[' || SUBSTRING(v.event_fields, 2) || ']' AS JSON)
            WHEN v.version > 1 THEN CAST('[' || SUBSTRING(v.compared_fields, 2) || ']' AS JSON)
        END AS changed_fields,
        -- A version no event reported (a read, a 404, a listing that missed the object)
        -- started some time after the previous version was last seen, and by `valid_from`.
        CASE
            WHEN v.event_id IS NULL AND v.version > 1
                THEN CAST(to_timestamp(v.previous_observed_at) AS TIMESTAMPTZ)
        END AS changed_after
    FROM (
        SELECT
            s.*,
            e.id AS event_id,
            -- The fields an event's `previous_attributes` names, as the text of a JSON array
            -- without brackets (null for a read, or an event without them: a creation or a
            -- deletion). The runner writes the list; for each field f (a promotion code's
            -- coupon_id is `coupon`, its restrictions_x is `restrictions.x`):
            --   CASE WHEN (CAST(e.previous_attributes AS JSON) -> '$.f') IS NOT NULL
            --       THEN ',"f"' ELSE '' END || ...
            CASE WHEN e.previous_attributes IS NOT NULL THEN {event_fields} END AS event_fields
        FROM starts AS s
        LEFT JOIN stripe_raw.events AS e
            ON e.account_id = s.account_id AND e.id = s._observation_key
    ) AS v
    CROSS JOIN as_of AS a
)
