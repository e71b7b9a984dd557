-- stripe.products_history: every version of every product the pipeline observed, one row
-- each, with stripe.products' columns derived the same way, and when each version held
-- (valid_from, valid_to). `versions` comes from _history.sql; the runner puts the text of
-- products.sql (the current-state table's SELECT, unchanged) in the CTE `products` below.
-- docs/HISTORY.md explains the rules. Key: (account_id, id, version).
,

current_state AS (
    -- What products.sql reads (nothing of a product changes with time alone).
    SELECT * FROM versions
),

products AS (
{products.sql}
)

SELECT
    account_id,
    id,
    version,
    CAST(to_timestamp(valid_from) AS TIMESTAMPTZ) AS valid_from,
    CAST(to_timestamp(valid_to) AS TIMESTAMPTZ) AS valid_to,
    is_current,
    is_deleted,
    changed_fields,
    changed_after,
    observed_via,
    event_id,
    * EXCLUDE (
        account_id, id, version, valid_from, valid_to, is_current, is_deleted,
        changed_fields, changed_after, observed_via, event_id
    )
FROM products
