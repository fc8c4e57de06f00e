-- Calls between components became generic: a call's journal entry is named `interface.function`
-- with the interface's package (`cairn:commerce/payments.create-charge`), and an invocation pins
-- one deployment per imported interface, with its version, instead of one per provider role.
-- Entries and pins written before keep replaying: the bundled roles' names are rewritten (their
-- arguments and results were already encoded as the generic calls encode them).
UPDATE journal SET name = 'cairn:commerce/' || name
 WHERE kind = 'call'
   AND name IN ('payments.create-charge', 'payments.refund-charge', 'email.send-email',
                'shipping.create-label');
UPDATE call_markers SET name = 'cairn:commerce/' || name
 WHERE name IN ('payments.create-charge', 'payments.refund-charge', 'email.send-email',
                'shipping.create-label');
UPDATE invocations SET providers =
    replace(replace(replace(providers,
        '"payments":', '"cairn:commerce/payments@0.1.0":'),
        '"email":', '"cairn:commerce/email@0.1.0":'),
        '"shipping":', '"cairn:commerce/shipping@0.1.0":');
UPDATE deployments SET kind = 'provider' WHERE kind IN ('payments', 'email', 'shipping');
