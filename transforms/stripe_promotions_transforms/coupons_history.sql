-- stripe.coupons_history: every version of every coupon the pipeline observed, one row each,
-- with stripe.coupons' columns derived the same way, and when each version held (valid_from,
-- valid_to). `versions` comes from _history.sql; the runner puts the text of coupons.sql (the
-- current-state table's SELECT, unchanged) in the CTE `coupons` below. docs/HISTORY.md
-- explains the rules. Key: (account_id, id, version).
,

split AS (
    -- Stripe flips a coupon's `valid` when redeem_by passes, without an event: a version
    -- that held when it passed (before the last sync, for the current one) is two rows.
    SELECT
        *,
        COALESCE(
            redeem_by > valid_from AND redeem_by < COALESCE(valid_to, synced_until + 1), FALSE
        ) AS expires_within
    FROM versions
),

current_state AS (
    -- What coupons.sql reads. It derives `valid`, `is_expired` and `status` as of
    -- `synced_until`: a row's start, so they hold for the whole row; for the current row
    -- the last sync, as in stripe.coupons.
    SELECT
        s.* EXCLUDE (expires_within) REPLACE (
            CASE WHEN s.expires_within THEN s.redeem_by ELSE s.valid_to END AS valid_to,
            s.is_current AND NOT s.expires_within AS is_current,
            CASE
                WHEN s.is_current AND NOT s.expires_within THEN s.synced_until
                ELSE s.valid_from
            END AS synced_until
        ),
        0 AS part
    FROM split AS s
    UNION ALL
    SELECT
        s.* EXCLUDE (expires_within) REPLACE (
            s.redeem_by AS valid_from,
            CASE WHEN s.is_current THEN s.synced_until ELSE s.redeem_by END AS synced_until,
            'expiry' AS observed_via,
            CAST(NULL AS TEXT) AS event_id,
            CAST(NULL AS TIMESTAMPTZ) AS changed_after
        ),
        1 AS part
    FROM split AS s
    WHERE s.expires_within
),

coupons AS (
{coupons.sql}
)

SELECT
    account_id,
    id,
    ROW_NUMBER() OVER (PARTITION BY account_id, id ORDER BY version, part) AS version,
    CAST(to_timestamp(valid_from) AS TIMESTAMPTZ) AS valid_from,
    CAST(to_timestamp(valid_to) AS TIMESTAMPTZ) AS valid_to,
    is_current,
    is_deleted,
    -- At redeem_by, `valid` changed if the coupon was valid until then.
    CASE
        WHEN part = 0 THEN changed_fields
        WHEN LAG(valid) OVER (PARTITION BY account_id, id ORDER BY version, part) AND NOT valid
            THEN CAST('["valid"]' AS JSON)
        ELSE CAST('[]' AS JSON)
    END AS changed_fields,
    changed_after,
    observed_via,
    event_id,
    * EXCLUDE (
        account_id, id, version, valid_from, valid_to, is_current, is_deleted,
        changed_fields, changed_after, observed_via, event_id, part
    )
FROM coupons
