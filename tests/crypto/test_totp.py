"""AUTH-6: TOTP against oathtool (RFC 6238 reference implementation), window edges,
replay refusal, malformed input, recovery codes."""

import subprocess
from datetime import UTC, datetime

import pytest

from appliance.crypto import totp
from tests.conftest import require_tool

T0 = 1_800_000_000.0  # a step boundary: 1_800_000_000 / 30 is whole


def oathtool(seed: str, at: float) -> str:
    tool = require_tool("oathtool")
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return subprocess.run([tool, "--totp", "-b", "--now", when, seed], check=True, capture_output=True,
                          text=True, timeout=10).stdout.strip()


def test_seed_is_160_bits_of_base32():
    seed = totp.new_seed()
    assert len(seed) == 32 and totp.parse_seed(seed.lower()) == seed
    assert len({totp.new_seed() for _ in range(50)}) == 50


def test_codes_match_oathtool_and_window_is_plus_minus_one_step():
    seed = totp.new_seed()
    for offset_steps, accepted in [(-2, False), (-1, True), (0, True), (1, True), (2, False)]:
        code = oathtool(seed, T0 + offset_steps * 30)
        if accepted:
            assert totp.verify(seed, code, now=T0 + 10, last_step=0) == totp.step_at(T0) + offset_steps
        else:
            with pytest.raises(totp.InvalidTOTPError):
                totp.verify(seed, code, now=T0 + 10, last_step=0)


def test_window_edges_at_step_boundaries():
    seed = totp.new_seed()
    code = oathtool(seed, T0)  # valid for [T0, T0+30)
    totp.verify(seed, code, now=T0 + 59.9, last_step=0)  # next step: still within +-1
    with pytest.raises(totp.InvalidTOTPError):
        totp.verify(seed, code, now=T0 + 60, last_step=0)  # two steps later
    totp.verify(seed, code, now=T0 - 30, last_step=0)  # the step before
    with pytest.raises(totp.InvalidTOTPError):
        totp.verify(seed, code, now=T0 - 30.1, last_step=0)


def test_replay_within_the_window_is_refused():
    seed = totp.new_seed()
    code = oathtool(seed, T0)
    step = totp.verify(seed, code, now=T0, last_step=0)
    with pytest.raises(totp.ReplayedTOTPError):
        totp.verify(seed, code, now=T0 + 5, last_step=step)
    older = oathtool(seed, T0 - 30)  # an earlier, unused step is refused too once a later one was used
    with pytest.raises(totp.ReplayedTOTPError):
        totp.verify(seed, older, now=T0, last_step=step)
    newer = oathtool(seed, T0 + 30)
    assert totp.verify(seed, newer, now=T0 + 30, last_step=step) == step + 1


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5x", "１２３４５６", "0" * 5000])
def test_malformed_codes_are_refused(code):
    with pytest.raises(totp.InvalidTOTPError) as err:
        totp.verify(totp.new_seed(), code, now=T0, last_step=0)
    assert "6-digit" in err.value.message


@pytest.mark.parametrize("seed", ["", "not base32!", "A" * 31, "A" * 33, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1", "A" * 16])
def test_malformed_seeds_are_refused(seed):
    with pytest.raises(totp.MalformedSeedError):
        totp.parse_seed(seed)


def test_provisioning_uri_is_what_authenticators_read():
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "alice", "Outpost")
    assert uri.startswith("otpauth://totp/Outpost:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Outpost")
    assert "digits=6" in uri and "period=30" in uri


def test_recovery_codes_are_random_and_typed_forgivingly():
    codes = totp.new_recovery_codes()
    assert len(codes) == 10 == len(set(codes)) and all(len(c) == 19 for c in codes)
    c = codes[0]
    assert totp.recovery_digest(c.upper().replace("-", " ")) == totp.recovery_digest(c)
    assert totp.recovery_digest(codes[1]) != totp.recovery_digest(c)
