"""The appliance looking at its own host: health (PROBE-6 subset), the integrity self-check
(UPD-4) and the licences of the bundled software.

Only what is about the host and this installation lives here: backups are `appliance.backup`,
the database key is `store.keys`.
"""
