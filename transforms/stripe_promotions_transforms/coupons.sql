-- stripe.coupons: every coupon ever seen, with Stripe's latest fields and soft-delete flags.
-- `current_state` comes from _current_state.sql. Written in DuckDB's dialect: the runner
-- expands `*` from the raw table's columns (fields Stripe adds appear here too) and transpiles.
SELECT
    c.* EXCLUDE (synced_until) REPLACE (
        CAST(to_timestamp(c.created) AS TIMESTAMPTZ) AS created,
        CAST(to_timestamp(c.redeem_by) AS TIMESTAMPTZ) AS redeem_by,
        -- `valid` as of the last sync: Stripe flips it without an event when redeem_by passes.
        COALESCE(
            c.valid
            AND NOT c.is_deleted
            AND (c.redeem_by IS NULL OR c.redeem_by > c.synced_until)
            AND (c.max_redemptions IS NULL OR c.times_redeemed < c.max_redemptions),
            FALSE
        ) AS valid
    ),
    'coupon' AS object,
    COALESCE(c.redeem_by <= c.synced_until, FALSE) AS is_expired,
    CASE WHEN c.percent_off IS NOT NULL THEN 'percent' ELSE 'amount' END AS discount_type,
    -- amount_off counts the currency's minor unit: JPY and friends have none, KWD three.
    CASE
        WHEN LOWER(c.currency) IN (
            'bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga',
            'pyg', 'rwf', 'ugx', 'vnd', 'vuv', 'xaf', 'xof', 'xpf'
        ) THEN CAST(c.amount_off AS DOUBLE)
        WHEN LOWER(c.currency) IN ('bhd', 'jod', 'kwd', 'omr', 'tnd')
            THEN CAST(c.amount_off AS DOUBLE) / 1000
        ELSE CAST(c.amount_off AS DOUBLE) / 100
    END AS amount_off_major,
    -- Null while `valid` was never observed (a batch patch without it).
    CASE
        WHEN c.is_deleted THEN 'deleted'
        WHEN c.redeem_by <= c.synced_until THEN 'expired'
        WHEN c.max_redemptions IS NOT NULL AND c.times_redeemed >= c.max_redemptions
            THEN 'exhausted'
        WHEN c.valid THEN 'valid'
        WHEN NOT c.valid THEN 'invalid'
    END AS status
FROM current_state AS c
