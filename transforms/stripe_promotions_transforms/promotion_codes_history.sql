-- stripe.promotion_codes_history: every version of every promotion code the pipeline
-- observed, one row each, with stripe.promotion_codes' columns and when each version held
-- (valid_from, valid_to). `versions` comes from _history.sql; built after
-- stripe.coupons_history, which it reads: a code is only active while its coupon is valid,
-- so its rows follow its coupon's too. The derived columns are promotion_codes.sql's, with
-- the coupon as it was rather than as it is. docs/HISTORY.md explains the rules.
-- Key: (account_id, id, version).
,

split AS (
    -- A code's `expires_at` passing changes what it is without an event: a version that held
    -- when it passed (before the last sync, for the current one) is two rows.
    SELECT
        *,
        COALESCE(
            expires_at > valid_from AND expires_at < COALESCE(valid_to, synced_until + 1), FALSE
        ) AS expires_within
    FROM versions
),

code_rows AS (
    -- Each row's time-driven columns are derived as of `synced_until`: its start, so they
    -- hold for the whole row; for the current row the last sync, as in stripe.promotion_codes.
    SELECT
        s.* EXCLUDE (expires_within) REPLACE (
            CASE WHEN s.expires_within THEN s.expires_at ELSE s.valid_to END AS valid_to,
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
            s.expires_at AS valid_from,
            CASE WHEN s.is_current THEN s.synced_until ELSE s.expires_at END AS synced_until,
            'expiry' AS observed_via,
            CAST(NULL AS TIMESTAMPTZ) AS changed_after
        ),
        1 AS part
    FROM split AS s
    WHERE s.expires_within
),

coupon_rows AS (
    -- Each coupon's rows that last (not those of one second), and before its first, a row
    -- for the time the pipeline did not know it (`valid` unknown).
    SELECT account_id, id, valid_from, valid_to, valid, changed_after
    FROM stripe.coupons_history
    WHERE valid_to IS NULL OR valid_to > valid_from
    UNION ALL
    SELECT
        account_id, id, CAST(NULL AS TIMESTAMPTZ), MIN(valid_from), CAST(NULL AS BOOLEAN),
        CAST(NULL AS TIMESTAMPTZ)
    FROM stripe.coupons_history
    GROUP BY account_id, id
),

timed AS (
    SELECT
        *,
        CAST(to_timestamp(valid_from) AS TIMESTAMPTZ) AS row_from,
        CAST(to_timestamp(valid_to) AS TIMESTAMPTZ) AS row_to
    FROM code_rows
),

pieces AS (
    -- Each code row with the coupon row that held when it started, and one more piece for
    -- every coupon row that started while it held.
    SELECT
        p.*,
        c.valid AS coupon_valid,
        COALESCE(c.valid_from > p.row_from, FALSE) AS coupon_changed,
        CASE WHEN c.valid_from > p.row_from THEN c.valid_from ELSE p.row_from END AS piece_from,
        c.changed_after AS coupon_changed_after
    FROM timed AS p
    LEFT JOIN coupon_rows AS c
        ON c.account_id = p.account_id
        AND c.id = p.coupon_id
        AND (
            (
                (c.valid_from IS NULL OR c.valid_from <= p.row_from)
                AND (c.valid_to IS NULL OR c.valid_to > p.row_from)
            )
            OR (c.valid_from > p.row_from AND (p.row_to IS NULL OR c.valid_from < p.row_to))
        )
),

derived AS (
    -- promotion_codes.sql's columns, with the coupon of the piece.
    SELECT
        p.* EXCLUDE (synced_until, coupon_valid, coupon_changed_after, row_from, row_to) REPLACE (
            CAST(to_timestamp(p.created) AS TIMESTAMPTZ) AS created,
            CAST(to_timestamp(p.expires_at) AS TIMESTAMPTZ) AS expires_at,
            COALESCE(p.active AND COALESCE(p.coupon_valid, TRUE), FALSE) AS active,
            CASE WHEN p.coupon_changed THEN 'coupon' ELSE p.observed_via END AS observed_via,
            CASE
                WHEN p.coupon_changed THEN p.coupon_changed_after ELSE p.changed_after
            END AS changed_after
        ),
        'promotion_code' AS object,
        COALESCE(p.expires_at <= p.synced_until, FALSE) AS is_expired,
        -- Redeemable then: active, not deleted or expired, under max_redemptions, coupon valid.
        COALESCE(
            p.active
            AND NOT p.is_deleted
            AND (p.expires_at IS NULL OR p.expires_at > p.synced_until)
            AND (p.max_redemptions IS NULL OR p.times_redeemed < p.max_redemptions)
            AND p.coupon_valid,
            FALSE
        ) AS is_redeemable,
        CASE
            WHEN p.is_deleted THEN 'deleted'
            WHEN p.expires_at <= p.synced_until THEN 'expired'
            WHEN p.max_redemptions IS NOT NULL AND p.times_redeemed >= p.max_redemptions
                THEN 'exhausted'
            -- Unknown while `active` or the coupon was never observed (a batch patch without them).
            WHEN p.active IS NULL OR p.coupon_id IS NULL THEN NULL
            WHEN NOT COALESCE(p.coupon_valid, FALSE) THEN 'coupon_invalid'
            WHEN NOT p.active THEN 'deactivated'
            ELSE 'redeemable'
        END AS status
    FROM pieces AS p
),

kept AS (
    -- A coupon change that changed nothing of the code is no new row of the code.
    SELECT
        *,
        LAG(active) OVER w AS previous_active,
        NOT coupon_changed
            OR active IS DISTINCT FROM LAG(active) OVER w
            OR is_redeemable IS DISTINCT FROM LAG(is_redeemable) OVER w
            OR status IS DISTINCT FROM LAG(status) OVER w AS starts_row
    FROM derived
    WINDOW w AS (PARTITION BY account_id, id ORDER BY version, part, piece_from)
)

SELECT
    account_id,
    id,
    ROW_NUMBER() OVER w AS version,
    piece_from AS valid_from,
    LEAD(piece_from) OVER w AS valid_to,
    LEAD(piece_from) OVER w IS NULL AS is_current,
    is_deleted,
    -- At expires_at no field of the code changes; when its coupon changed, `active` may.
    CASE
        WHEN coupon_changed AND active IS DISTINCT FROM previous_active
            THEN CAST('["active"]' AS JSON)
        WHEN coupon_changed OR part = 1 THEN CAST('[]' AS JSON)
        ELSE changed_fields
    END AS changed_fields,
    changed_after,
    observed_via,
    * EXCLUDE (
        account_id, id, version, valid_from, valid_to, is_current, is_deleted,
        changed_fields, changed_after, observed_via, part, coupon_changed, piece_from,
        previous_active, starts_row
    )
FROM kept
WHERE starts_row
WINDOW w AS (PARTITION BY account_id, id ORDER BY version, part, piece_from)
