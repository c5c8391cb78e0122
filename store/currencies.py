"""ISO 4217 currency codes, so a typo such as "ERU" is refused instead of stored.

The list is ISO 4217 List One (current currency and funds codes, as published by
the SIX maintenance agency), without the codes for testing (XTS), for "no
currency" (XXX), for precious metals (XAU, XAG, XPD, XPT) and for bond-market
units (XBA, XBB, XBC, XBD), none of which prices goods. A few codes withdrawn
since 2020 stay accepted because older purchase orders and price lists carry
them: ANG (Netherlands Antillean guilder), CUC (Cuban convertible peso), HRK
(Croatian kuna), SLL (Sierra Leonean leone, old) and ZWL (Zimbabwe dollar).
"""

from __future__ import annotations

from store.errors import InvalidInputError

_LIST_ONE = """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN
    BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK
    MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR
    SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH
    UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XDR XOF XPF XSU XUA YER ZAR ZMW ZWG
    ANG CUC HRK SLL ZWL
"""
ISO_4217 = frozenset(_LIST_ONE.split())


def check_currency_code(value: str, *, field: str = "currency") -> str:
    """Return `value` trimmed and upper-cased if it is an ISO 4217 code.

    Raises:
        InvalidInputError: If it is not three letters, or not a known code.
    """
    code = value.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise InvalidInputError(f"{field} {value!r} is not a currency code; use three letters such as EUR, USD or CAD.")
    if code not in ISO_4217:
        raise InvalidInputError(
            f"{field} {value!r} is not an ISO 4217 currency code; check the spelling (for example EUR, USD, GBP, CAD, AUD, CNY)."
        )
    return code
