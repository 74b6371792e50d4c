"""Mart numbers for the hand-written registry in conftest.py, worked out by hand.

As of 2025-09-30. Index POEMs: alpha A1, A2, A3, A7 and beta B1, B3.
Not index: A4 (redo of A1's patient), A5 (g_poem, out of scope), A6 (patient withdrawn
in batch 2), B2 (extracted 2025-10-15, after as_of). A7's winning version (batch 2,
latest record_updated_at) has technical_success = true.

Windows closed by as_of: w_3_6m for all six; w_12m for all but A3 (2024-04-20 + 540 =
2025-10-12); no w_24m.

Eckardt pick per window (day after POEM: total):
  A1  w_3_6m: days 100 (2) and 140 (5) tie around 120 -> later: 5, fail; w_12m: 365 (1)
      re-intervention (redo POEM, persistent symptoms) on day 235: inside w_3_6m after its
      assessment, before w_12m starts -> composite fails at 12 months.
  A2  day 59 in no window; w_12m: 241 (2), success.
  A3  day 120 total 8 disagrees with items (9): excluded; Heller on day 50, before w_3_6m
      -> composite PP failure at 3-6 months without an assessment.
  A7  w_3_6m: 240 (3), success; nothing in w_12m (ITT failure).
  B1  w_3_6m: 120 (0); w_12m: 365 (2); dilation for GERD on day 200 is not a failure.
  B3  w_3_6m: 200 (3); w_12m: 500, corrected in batch 2 from 2 to 4 -> fail.
"""

from __future__ import annotations

#: (measure_id, denominator_variant, site_id) -> (numerator, denominator), period all_time.
ALL_TIME: dict[tuple[str, str, str], tuple[int | None, int]] = {
    # P1 technical success: A3 failed.
    ("P1", "standard", "ALL"): (5, 6),
    ("P1", "standard", "alpha"): (3, 4),
    ("P1", "standard", "beta"): (2, 2),
    # P2 cs_eckardt_le3 at 3-6 months. PP assessed: A1 (5), A7 (3), B1 (0), B3 (3).
    ("P2", "PP", "ALL"): (3, 4),
    ("P2", "ITT", "ALL"): (3, 6),
    ("P2", "PP", "alpha"): (1, 2),
    ("P2", "ITT", "alpha"): (1, 4),
    ("P2", "PP", "beta"): (2, 2),
    # P2C composite at 3-6 months: A3 joins the PP denominator as a known failure.
    ("P2C", "PP", "ALL"): (3, 5),
    ("P2C", "ITT", "ALL"): (3, 6),
    # P3 composite at 12 months. Eligible: A1, A2, A7, B1, B3. PP: A1 (re-intervened), A2, B1, B3 (4).
    ("P3", "PP", "ALL"): (2, 4),
    ("P3", "ITT", "ALL"): (2, 5),
    ("P3", "PP", "alpha"): (1, 2),
    ("P3", "ITT", "alpha"): (1, 3),
    ("P3", "PP", "beta"): (1, 2),
    ("P3", "ITT", "beta"): (1, 2),
    # P3E cs_eckardt_le3 at 12 months: A1 (1), A2 (2), B1 (2) succeed, B3 (4) fails.
    ("P3E", "PP", "ALL"): (3, 4),
    ("P3E", "ITT", "ALL"): (3, 5),
    # 30-day AEs of index POEMs: A2 perforation + surgery (severe), A7 bleeding + repeat
    # endoscopy (moderate), B1 pneumonia 5 nights (moderate; its capnoperitoneum is an
    # incident), B3 pain 1 night (mild; its day-45 event is late). A6 is withdrawn.
    ("P5", "standard", "ALL"): (4, 6),
    ("P6M", "standard", "ALL"): (3, 6),
    ("P6S", "standard", "ALL"): (1, 6),
    ("P6S", "standard", "beta"): (0, 2),
    # P7 mucosotomy: A1.
    ("P7", "standard", "ALL"): (1, 6),
    # P8 baseline + HRM subtype: A1 and B1 (A2 baseline > 180 days, B3 unsubtyped, A3/A7 none).
    ("P8", "standard", "ALL"): (2, 6),
    # P9 follow-up completeness at 12 months: 4 of 5 eligible (A7 missing); at 3-6 months 4 of 6.
    ("P9", "standard", "ALL"): (4, 5),
    ("P9A", "standard", "ALL"): (4, 6),
    # P10 pH or EGD at 60-540 days among w_12m-eligible: A1, A2, B1 of 5.
    ("P10", "standard", "ALL"): (3, 5),
    # Reflux at 60-540 days. EGDs: A1 B, A2 A, B1 C (B1's day-20 LA D is excluded).
    ("P11", "standard", "ALL"): (2, 3),
    ("P11A", "standard", "ALL"): (3, 3),
    ("P11C", "standard", "ALL"): (1, 3),
    # Off-PPI pH: only A1 (8% > 6%); B1's study was on PPI.
    ("P11G", "standard", "ALL"): (1, 1),
    # GerdQ: A1 9, A2 4, B1 10.
    ("P11S", "standard", "ALL"): (2, 3),
    ("P11L", "standard", "ALL"): (2, 3),
    # PPI at the w_12m assessment: A1 yes, A2 no, B1 yes (B3 not recorded).
    ("P12", "standard", "ALL"): (2, 3),
}

#: P13 median length of stay (nights) and its n: A1 2, A2 1, B1 3.
P13_ALL = (2.0, 3)

#: site_id, quarter_start -> (numerator, denominator) of mart_technical_success_quarterly.
TECHNICAL_SUCCESS_QUARTERLY = {
    ("alpha", "2024-01-01"): (3, 3),
    ("alpha", "2024-04-01"): (0, 1),
    ("beta", "2023-10-01"): (1, 1),
    ("beta", "2024-01-01"): (1, 1),
    ("ALL", "2023-10-01"): (1, 1),
    ("ALL", "2024-01-01"): (4, 4),
    ("ALL", "2024-04-01"): (0, 1),
}

#: procedure_sk -> (event, event_type, time_days) of mart_durability_input.
DURABILITY = {
    "alpha:A1": (True, "eckardt_gt3", 140),
    "alpha:A2": (False, None, 241),
    "alpha:A3": (True, "reintervention", 50),
    "alpha:A7": (False, None, 240),
    "beta:B1": (False, None, 365),
    "beta:B3": (True, "eckardt_gt3", 500),
}

#: operator_key -> case numbers in procedure order (OP1 works at both sites).
OPERATOR_CASES = {
    ("OP1", "beta:B1"): 1,
    ("OP1", "alpha:A1"): 2,
    ("OP1", "alpha:A2"): 3,
    ("OP2", "alpha:A7"): 1,
    ("OP2", "alpha:A3"): 2,
    ("OP2", "alpha:A4"): 3,
    ("OP3", "beta:B3"): 1,
}
