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
            CAST(NULL AS TEXT) AS event_id,
            CAST(NULL AS TIMESTAMPTZ) AS changed_after
        ),
        1 AS part
    FROM split AS s
    WHERE s.expires_within
),

coupon_rows AS (
    -- Each coupon's rows that last (not those of one second); the first one also stands for
    -- the time before the pipeline first observed the coupon (a code listed a moment before
    -- its coupon has it as first observed, as stripe.promotion_codes would).
    SELECT
        account_id,
        id,
        CASE WHEN valid_from > first_from THEN valid_from END AS valid_from,
        valid_to,
        valid,
        changed_after
    FROM (
        SELECT
            *,
            MIN(valid_from) OVER (PARTITION BY account_id, id) AS first_from
        FROM stripe.coupons_history
        WHERE valid_to IS NULL OR valid_to > valid_from
    ) AS lasting
),

timed AS (
    SELECT
        *,
        CAST(to_timestamp(valid_from) AS TIMESTAMPTZ) AS row_from,
        CAST(to_timestamp(valid_to) AS TIMESTAMPTZ) AS row_to
    FROM code_rows
),

pieces AS (
    -- Each code row with the coupon row that held when it started...
    SELECT
        p.*,
        c.valid AS coupon_valid,
        FALSE AS coupon_changed,
        p.row_from AS piece_from,
        CAST(NULL AS TIMESTAMPTZ) AS coupon_changed_after
    FROM timed AS p
    JOIN coupon_rows AS c ON c.account_id = p.account_id AND c.id = p.coupon_id
    WHERE
        (c.valid_from IS NULL OR c.valid_from <= p.row_from)
        AND (c.valid_to IS NULL OR c.valid_to > p.row_from)
    UNION ALL
    -- ...(or with none: a coupon the pipeline never observed)...
    SELECT
        p.*,
        CAST(NULL AS BOOLEAN) AS coupon_valid,
        FALSE AS coupon_changed,
        p.row_from AS piece_from,
        CAST(NULL AS TIMESTAMPTZ) AS coupon_changed_after
    FROM timed AS p
    WHERE NOT EXISTS (
        SELECT 1 FROM coupon_rows AS c WHERE c.account_id = p.account_id AND c.id = p.coupon_id
    )
    UNION ALL
    -- ...and one more piece for every coupon row that started while it held.
    SELECT
        p.*,
        c.valid AS coupon_valid,
        TRUE AS coupon_changed,
        c.valid_from AS piece_from,
        c.changed_after AS coupon_changed_after
    FROM timed AS p
    JOIN coupon_rows AS c ON c.account_id = p.account_id AND c.id = p.coupon_id
    WHERE c.valid_from > p.row_from AND (p.row_to IS NULL OR c.valid_from < p.row_to)
),

derived AS (
    -- promotion_codes.sql's columns, with the coupon of the piece.
    SELECT
        p.* EXCLUDE (synced_until, coupon_valid, coupon_changed_after, row_from, row_to) REPLACE (
            CAST(to_timestamp(p.created) AS TIMESTAMPTZ) AS created,
            CAST(to_timestamp(p.expires_at) AS TIMESTAMPTZ) AS expires_at,
            COALESCE(p.active AND COALESCE(p.coupon_valid, TRUE), FALSE) AS active,
            CASE WHEN p.coupon_changed THEN 'coupon' ELSE p.observed_via END AS observed_via,
            CASE WHEN p.coupon_changed THEN NULL ELSE p.event_id END AS event_id,
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

cut AS (
    -- The codes with more rows than versions (cut at their expiry, or where their coupon
    -- changed): only they need renumbering; the others keep their versions as they are.
    SELECT DISTINCT account_id, id FROM derived WHERE coupon_changed OR part = 1
),

kept AS (
    -- A coupon change that changed nothing of the code is no new row of the code.
    SELECT
        d.*,
        LAG(d.active) OVER w AS previous_active,
        NOT d.coupon_changed
            OR d.active IS DISTINCT FROM LAG(d.active) OVER w
            OR d.is_redeemable IS DISTINCT FROM LAG(d.is_redeemable) OVER w
            OR d.status IS DISTINCT FROM LAG(d.status) OVER w AS starts_row
    FROM derived AS d
    JOIN cut AS c ON c.account_id = d.account_id AND c.id = d.id
    WINDOW w AS (PARTITION BY d.account_id, d.id ORDER BY d.version, d.part, d.piece_from)
),

code_versions AS (
    SELECT d.* REPLACE (CAST(to_timestamp(d.valid_to) AS TIMESTAMPTZ) AS valid_to)
    FROM derived AS d
    WHERE NOT EXISTS (SELECT 1 FROM cut AS c WHERE c.account_id = d.account_id AND c.id = d.id)
    UNION ALL
    SELECT
        k.* EXCLUDE (previous_active, starts_row) REPLACE (
            ROW_NUMBER() OVER w AS version,
            LEAD(k.piece_from) OVER w AS valid_to,
            LEAD(k.piece_from) OVER w IS NULL AS is_current,
            -- At expires_at no field of the code changes; where its coupon changed, `active`
            -- may have.
            CASE
                WHEN k.coupon_changed AND k.active IS DISTINCT FROM k.previous_active
                    THEN CAST('["active"]' AS JSON)
                WHEN k.coupon_changed OR k.part = 1 THEN CAST('[]' AS JSON)
                ELSE k.changed_fields
            END AS changed_fields
        )
    FROM kept AS k
    WHERE k.starts_row
    WINDOW w AS (PARTITION BY k.account_id, k.id ORDER BY k.version, k.part, k.piece_from)
)

SELECT
    account_id,
    id,
    version,
    piece_from AS valid_from,
    valid_to,
    is_current,
    is_deleted,
    changed_fields,
    changed_after,
    observed_via,
    event_id,
    * EXCLUDE (
        account_id, id, version, valid_from, valid_to, is_current, is_deleted,
        changed_fields, changed_after, observed_via, event_id, part, coupon_changed,
        piece_from
    )
FROM code_versions
