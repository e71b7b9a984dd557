-- stripe.promotion_codes: every promotion code ever seen, with Stripe's latest fields.
-- `current_state` comes from _current_state.sql; built after stripe.coupons, which it reads:
-- a code is only active while its coupon is valid, and Stripe sends no event when that ends.
SELECT
    p.* EXCLUDE (
        deleted_epoch, synced_until,
        _observed_at, _observed_order, _observed_via, _observation_key, _api_version
    ) REPLACE (
        CAST(to_timestamp(p.created) AS TIMESTAMPTZ) AS created,
        CAST(to_timestamp(p.expires_at) AS TIMESTAMPTZ) AS expires_at,
        COALESCE(p.active AND COALESCE(c.valid, TRUE), FALSE) AS active
    ),
    'promotion_code' AS object,
    CAST(to_timestamp(p.deleted_epoch) AS TIMESTAMPTZ) AS deleted_at,
    COALESCE(p.expires_at <= p.synced_until, FALSE) AS is_expired,
    -- Redeemable now: active, not deleted or expired, under max_redemptions, coupon valid.
    COALESCE(
        p.active
        AND NOT p.is_deleted
        AND (p.expires_at IS NULL OR p.expires_at > p.synced_until)
        AND (p.max_redemptions IS NULL OR p.times_redeemed < p.max_redemptions)
        AND c.valid,
        FALSE
    ) AS is_redeemable,
    CASE
        WHEN p.is_deleted THEN 'deleted'
        WHEN p.expires_at <= p.synced_until THEN 'expired'
        WHEN p.max_redemptions IS NOT NULL AND p.times_redeemed >= p.max_redemptions
            THEN 'exhausted'
        WHEN NOT COALESCE(c.valid, FALSE) THEN 'coupon_invalid'
        WHEN NOT p.active THEN 'deactivated'
        ELSE 'redeemable'
    END AS status,
    CAST(to_timestamp(p._observed_at) AS TIMESTAMPTZ) AS synced_at,
    p._observed_via AS observed_via
FROM current_state AS p
LEFT JOIN stripe.coupons AS c ON c.id = p.coupon_id
