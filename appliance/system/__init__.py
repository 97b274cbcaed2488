"""The appliance looking at itself: host health (PROBE-6 subset) and bundled licences."""
