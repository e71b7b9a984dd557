-- stripe.products: every product ever seen, with Stripe's latest fields and soft-delete flags.
-- `current_state` comes from _current_state.sql (see coupons.sql for how the runner uses it).
SELECT
    p.* EXCLUDE (
        deleted_epoch, synced_until,
        _observed_at, _observed_order, _observed_via, _observation_key, _api_version
    ) REPLACE (
        CAST(to_timestamp(p.created) AS TIMESTAMPTZ) AS created,
        CAST(to_timestamp(p.updated) AS TIMESTAMPTZ) AS updated
    ),
    'product' AS object,
    CAST(to_timestamp(p.deleted_epoch) AS TIMESTAMPTZ) AS deleted_at,
    CASE
        WHEN p.is_deleted THEN 'deleted'
        WHEN p.active THEN 'active'
        ELSE 'archived'
    END AS status,
    CAST(to_timestamp(p._observed_at) AS TIMESTAMPTZ) AS synced_at,
    p._observed_via AS observed_via
FROM current_state AS p
