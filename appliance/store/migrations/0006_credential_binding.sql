-- 0006: credential bindings (issue 11, finding 5). A stored credential is sent only to the
-- address, port and host key an admin (or the person who entered the secret) bound it to.

-- Who entered the secret ("user:<name>" or "system:system"); '' = unknown (entered before
-- this migration and not found in the audit log): only an admin may bind it anew.
ALTER TABLE credentials ADD COLUMN entered_by TEXT NOT NULL DEFAULT '';

UPDATE credentials SET entered_by = COALESCE((
    SELECT CASE a.actor_type WHEN 'system' THEN 'system:' ELSE 'user:' END || a.actor
    FROM audit_log a
    WHERE a.action IN ('credential.create', 'credential.update') AND a.target = 'credential:' || credentials.id
      AND (a.action = 'credential.create' OR a.details LIKE '%"replaced":true%')
    ORDER BY a.seq DESC LIMIT 1), '');

-- 'pending': the device uses a credential at an address, port or host key nobody entitled
-- approved yet; the probe then opens no secret and only tests TCP reachability.
-- (ALTER TABLE ... ADD COLUMN with a CHECK runs a PRAGMA, which migrations may not: triggers instead.)
ALTER TABLE devices ADD COLUMN binding_status TEXT NOT NULL DEFAULT 'approved';
CREATE TRIGGER devices_binding_status_insert BEFORE INSERT ON devices
    WHEN NEW.binding_status NOT IN ('approved', 'pending')
    BEGIN SELECT RAISE(ABORT, 'binding_status must be approved or pending'); END;
CREATE TRIGGER devices_binding_status_update BEFORE UPDATE OF binding_status ON devices
    WHEN NEW.binding_status NOT IN ('approved', 'pending')
    BEGIN SELECT RAISE(ABORT, 'binding_status must be approved or pending'); END;
ALTER TABLE devices ADD COLUMN binding_requested_by TEXT;
ALTER TABLE devices ADD COLUMN binding_requested_at REAL;
ALTER TABLE devices ADD COLUMN binding_approved_by TEXT;
ALTER TABLE devices ADD COLUMN binding_approved_at REAL;
