-- Notifications (issue 20): each notice keyportal has delivered, so that it is delivered once.
--
-- A row is written only after the SMTP server (or the webhook) accepted the notice, in the
-- same transaction as its audit event: delivery is at-least-once (a crash between the accept
-- and the commit sends it again next round), never silently lost. The unique indexes are what
-- "once" means: one row per kind, subject, channel, recipient and period, where the period is
-- what lets a notice legitimately repeat (the expiry a key is due to pass, the policy rule it
-- now breaks, the compromise reason, the UTC day of a digest).
CREATE TABLE notifications_sent (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind      TEXT NOT NULL CHECK (kind IN ('key_expiring', 'key_invalid', 'key_compromised',
                                            'access_request_pending', 'admin_digest')),
    -- The key's or the access request's id; `digest` for the daily digest.
    subject   TEXT NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 100 AND subject !~ '[[:cntrl:]]'),
    channel   TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    -- The person mailed (email); the webhook has none.
    user_id   BIGINT REFERENCES users (id) ON DELETE CASCADE,
    -- The address it went to, kept for the record.
    address   TEXT CHECK (address IS NULL OR char_length(address) <= 320),
    period    TEXT NOT NULL CHECK (char_length(period) BETWEEN 1 AND 100 AND period !~ '[[:cntrl:]]'),
    sent_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT notifications_sent_recipient
        CHECK ((channel = 'email') = (user_id IS NOT NULL AND address IS NOT NULL))
);
CREATE UNIQUE INDEX notifications_sent_email_once
    ON notifications_sent (kind, subject, user_id, period) WHERE channel = 'email';
CREATE UNIQUE INDEX notifications_sent_webhook_once
    ON notifications_sent (kind, subject, period) WHERE channel = 'webhook';
