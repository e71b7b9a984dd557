-- stripe.products: every product ever seen, with Stripe's latest fields and soft-delete flags.
-- `current_state` comes from _current_state.sql (see coupons.sql for how the runner uses it).
SELECT
    p.* EXCLUDE (synced_until) REPLACE (
        CAST(to_timestamp(p.created) AS TIMESTAMPTZ) AS created,
        CAST(to_timestamp(p.updated) AS TIMESTAMPTZ) AS updated
    ),
    'product' AS object,
    -- Null while `active` was never observed (a batch patch without it).
    CASE
        WHEN p.is_deleted THEN 'deleted'
        WHEN p.active THEN 'active'
        WHEN NOT p.active THEN 'archived'
    END AS status
FROM current_state AS p
