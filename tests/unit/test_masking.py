"""Masking of NIR, phone numbers, dates of birth, addresses and secrets (mailbot.masking)."""

from __future__ import annotations

import random

import pytest

from mailbot.masking import (
    BIRTH_DATE_MASK,
    NIR_MASK,
    PHONE_MASK,
    is_valid_nir,
    mask_birth_dates,
    mask_email_local_parts,
    mask_nir,
    mask_phone_numbers,
    mask_secrets,
    mask_text,
    nir_key,
)

# Reference vectors checked against python-stdnum's stdnum.fr.nir (reliability notes §3.8).
KNOWN_VALID = ["295109912611193", "253072B07300470", "253072A07300443", "255081416802538", "178059933010817"]


def _generated_nirs(count: int, seed: int = 1409) -> list[str]:
    """Synthetic NIRs with correct keys, a third of them Corsican (2A/2B)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        department = ["2A", "2B", f"{rng.randint(1, 95):02d}"][i % 3]
        first13 = (f"{rng.choice('12')}{rng.randint(0, 99):02d}{rng.randint(1, 12):02d}"
                   f"{department}{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}")
        out.append(f"{first13}{nir_key(first13):02d}")
    return out


@pytest.mark.parametrize("nir", KNOWN_VALID)
def test_reference_nirs_are_valid(nir):
    assert is_valid_nir(nir)


@pytest.mark.parametrize("nir", _generated_nirs(60))
def test_generated_nir_masked_in_every_written_form(nir):
    grouped = f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}"
    dotted = grouped.replace(" ", ".")
    for form in (nir, grouped, dotted, nir.lower()):
        text = f"Patient NIR : {form}, merci."
        assert mask_nir(text) == f"Patient NIR : {NIR_MASK}, merci.", form


def test_corsican_nirs_use_19_and_18_for_the_key():
    # 2A counts as 19 and 2B as 18: the key differs from one computed on digits.
    assert nir_key("253072A073004") == 43
    assert nir_key("253072B073004") == 70
    assert mask_nir("n° 2 53 07 2A 073 004 43") == f"n° {NIR_MASK}"


@pytest.mark.parametrize("nir", _generated_nirs(20, seed=7))
def test_number_failing_the_key_check_is_not_masked_as_nir(nir):
    wrong_key = f"{(int(nir[13:]) % 97) + 1:02d}"
    bad = nir[:13] + wrong_key
    assert not is_valid_nir(bad)
    assert NIR_MASK not in mask_nir(f"commande {bad} livrée")


def test_valid_nir_overlapping_an_invalid_candidate_is_still_found():
    # "12 " before the NIR makes an earlier 15-character candidate that fails
    # the key check; the real NIR after it must still be masked.
    assert mask_nir("12 295109912611193") == f"12 {NIR_MASK}"


def test_nir_inside_a_longer_number_is_left_alone():
    assert mask_nir("ref 92951099126111934") == "ref 92951099126111934"


@pytest.mark.parametrize("phone", [
    "06 12 34 56 78", "0612345678", "01.23.45.67.89", "04-76-12-34-56",
    "+33 6 12 34 56 78", "+33612345678", "+33 (0)6 12 34 56 78", "0033 1 23 45 67 89",
])
def test_french_phone_numbers_masked(phone):
    assert mask_phone_numbers(f"rappeler le {phone} svp") == f"rappeler le {PHONE_MASK} svp"


def test_other_numbers_are_not_phones():
    for text in ("version 1.2.3", "ticket SAMU-000123", "poste 4521", "IP 10.12.34.56"):
        assert mask_phone_numbers(text) == text


@pytest.mark.parametrize("text", [
    "né le 12/03/1980", "née le 1.2.80", "né(e) le 03-04-1975", "DDN : 12/03/1980",
    "DDN 12/03/1980", "date de naissance : 1er janvier 1950", "Née le 3 mars 1944", "D.N. 12/03/1980",
])
def test_birth_dates_masked_after_a_cue(text):
    masked = mask_birth_dates(text)
    assert masked.endswith(BIRTH_DATE_MASK)
    assert not any(ch.isdigit() for ch in masked)


def test_dates_without_a_birth_cue_are_kept():
    text = "panne depuis le 12/03/2024 à 14h"
    assert mask_birth_dates(text) == text


def test_email_local_part_masked_domain_kept():
    assert mask_email_local_parts("de jean.dupont@chu-exemple.fr et <a+b@x.org>") == \
        "de ***@chu-exemple.fr et <***@x.org>"


def test_secrets_masked_longest_first_and_short_ones_ignored():
    assert mask_secrets("pw=hunter22hunter22 x", ["hunter22", "hunter22hunter22"]) == "pw=*** x"
    assert mask_secrets("a ab abc", ["ab"]) == "a ab abc"


def test_mask_text_applies_everything_and_leaves_plain_text_alone():
    text = ("Mme X née le 12/03/1980, NIR 295109912611193, tél 06 12 34 56 78, "
            "écrire à jean.dupont@chu.fr, mot de passe 0612345678secret")
    masked = mask_text(text, emails=True, secrets=["0612345678secret"])
    assert masked == ("Mme X née le [DATE_NAISSANCE], NIR [NIR], tél [TEL], "
                      "écrire à ***@chu.fr, mot de passe ***")
    plain = "Le logiciel Centaure plante à l'ouverture depuis ce matin."
    assert mask_text(plain, emails=True) == plain
