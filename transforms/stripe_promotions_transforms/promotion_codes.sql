-- stripe.promotion_codes: every promotion code ever seen, with Stripe's latest fields.
-- `current_state` comes from _current_state.sql; built after stripe.coupons, which it reads:
-- a code is only active while its coupon is valid, and Stripe sends no event when that ends.
SELECT
    p.* EXCLUDE (synced_until) REPLACE (
        CAST(to_timestamp(p.created) AS TIMESTAMPTZ) AS created,
        CAST(to_timestamp(p.expires_at) AS TIMESTAMPTZ) AS expires_at,
        COALESCE(p.active AND COALESCE(c.valid, TRUE), FALSE) AS active
    ),
    'promotion_code' AS object,
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
        -- Unknown while `active` or the coupon was never observed (a batch patch without them).
        WHEN p.active IS NULL OR p.coupon_id IS NULL THEN NULL
        WHEN NOT COALESCE(c.valid, FALSE) THEN 'coupon_invalid'
        WHEN NOT p.active THEN 'deactivated'
        ELSE 'redeemable'
    END AS status
FROM current_state AS p
LEFT JOIN stripe.coupons AS c ON c.account_id = p.account_id AND c.id = p.coupon_id
