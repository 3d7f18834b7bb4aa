"""Knowledge answers: questions the pack answers, and questions it does not, side by side
with and without answering by a named word (``nlu.knowledge``).

    python benchmarks/knowledge.py [--json PATH]     # about 20 s

Two sets of questions written for this, in the telecom pack's terms: ``tune``
(15 the pack answers, 10 it does not), on which ``NAMED_FLOOR`` and
``NAMED_PASSAGES`` were set, and ``held_out`` (10 and 8), written after. A
question the pack answers is right when the answer comes from the expected
section; one it does not answer is right when no answer comes. "embedder
only" is the same knowledge base with the named-word step switched off.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import cpu_model, write_results  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "knowledge.json"

# (question, the section(s) that answer it: a part of the source, "|" between choices)
ANSWERED = {
    "tune": [
        ("does my Everyday 20 allowance work in Canada?", "Travel Zone"),
        ("can I use my phone in Mexico", "Travel Zone"),
        ("what's a PAC and how do I get one", "porting"),
        ("who is the ombudsman and when can I go to them", "Complaints"),
        ("how do I block my phone's IMEI", "Phone lost or stolen"),
        ("what happens if my router light is flashing red", "No internet at home"),
        ("do I need to pay the amount I'm disputing", "Disputing a charge"),
        ("how long do refunds take", "Refunds"),
        ("can I return a phone I bought last week", "Returns"),
        ("what are your store opening hours on Sunday", "Opening hours"),
        ("how much is a data boost", "Extra data"),
        ("is there a fee if I leave my broadband early", "Contracts|Leaving us"),
        ("what time do engineers come in the afternoon", "Engineer visits"),
        ("my phone says no SIM, what do I do", "No mobile signal"),
        ("how much does Fibre 500 cost", "Broadband plans"),
    ],
    "held_out": [
        ("is the UK part of the travel zone", "Travel Zone"),
        ("what's the porting code called", "porting"),
        ("can I take my complaint to an independent body", "Complaints"),
        ("how much is the call-out fee if it's my wiring", "Engineer visits"),
        ("do you charge a late fee", "Late payments"),
        ("I'm travelling to Mexico, do I pay extra for data", "Travel Zone"),
        ("what's the IMEI thing for", "Phone lost or stolen"),
        ("Does Basic Talk include roaming", "Basic Talk|Mobile plans"),
        ("can I pay by direct debit", "Paying"),
        ("what's the minimum term for fibre", "Contracts|Leaving us"),
    ],
}
UNANSWERED = {
    "tune": ["what's the capital of Peru?", "do you sell gift cards?",
             "can I get a discount for being a pensioner?",
             "what's the best phone to buy for a teenager?",
             "is your company hiring at the moment?", "how do I set up voicemail on an iPhone",
             "what's the weather in Canada", "can you recommend a restaurant in Mexico City",
             "do you have an app for the Apple Watch", "how do I change my Netflix password"],
    "held_out": ["what's the exchange rate in Canada", "do you sell Mexican food",
                 "can you tell me a joke about routers", "how tall is the Eiffel tower",
                 "what's the PAC-12 football score", "Can I bring my dog into the store?",
                 "what's the population of Canada", "do you repair washing machines"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()

    from nlu.embeddings import SentenceEmbedder
    from nlu.knowledge import KnowledgeBase
    from voicedesk.config import load_config
    from voicedesk.models.prepare import ModelStore

    config = load_config()
    embedder = SentenceEmbedder(ModelStore(config.models_dir).embeddings(config.nlu.embeddings))
    knowledge = KnowledgeBase(REPO / "nlu/domain/telecom/knowledge", embedder)
    embedder_only = KnowledgeBase(REPO / "nlu/domain/telecom/knowledge", embedder)
    embedder_only._named = lambda *_: None  # type: ignore[method-assign]
    modes = {"embedder only": embedder_only, "with named words": knowledge}
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "sets": {}}
    print(f"{'set':<10} {'mode':<18} {'answered right':>15} {'off-pack answered':>18}")
    for name in ANSWERED:
        result["sets"][name] = {}
        for mode, kb in modes.items():
            rows = []
            for question, want in ANSWERED[name]:
                answer = kb.answer(question)
                rows.append({"question": question, "want": want,
                             "source": answer.source if answer else None,
                             "right": answer is not None
                             and any(w in answer.source for w in want.split("|"))})
            for question in UNANSWERED[name]:
                answer = kb.answer(question)
                rows.append({"question": question, "want": None,
                             "source": answer.source if answer else None,
                             "right": answer is None})
            right = sum(r["right"] for r in rows if r["want"])
            wrong_off = sum(not r["right"] for r in rows if not r["want"])
            result["sets"][name][mode] = {"answered_right": right, "of": len(ANSWERED[name]),
                                          "off_pack_answered": wrong_off,
                                          "off_pack": len(UNANSWERED[name]), "questions": rows}
            print(f"{name:<10} {mode:<18} {right:>9} of {len(ANSWERED[name]):<3} "
                  f"{wrong_off:>12} of {len(UNANSWERED[name])}")
    write_results(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
