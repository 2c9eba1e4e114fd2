"""The review's verdicts as JUnit XML (``maforecast review --junit FILE``), so a CI page shows which policy
check failed for which candidate: one test suite per candidate, one test case per rule.

A failed rule is a ``<failure>`` with the message the verdict table prints; a warning passes (JUnit has no
warning) and says so in ``<system-out>``; a skipped rule is ``<skipped>``. Plain ``xml.etree`` output in the
schema GitLab, Jenkins and GitHub test reporters read (testsuites > testsuite > testcase).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from review.verdict import ReviewAnswer


def junit_xml(answer: ReviewAnswer) -> str:
    p = answer.predictor or {}
    who = f"{p.get('name', 'maforecast-predictor')} v{p.get('version', '?')}" + (f" @{p['alias']}" if p.get("alias") else "")
    root = ET.Element("testsuites", name="maforecast review")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for cand in answer.candidates:
        suite = ET.SubElement(root, "testsuite", name=cand.name)
        props = ET.SubElement(suite, "properties")
        for k, v in (("source", cand.source), ("architecture", cand.architecture), ("precision_target", cand.precision_target),
                     ("predictor", who), ("policy", answer.policy), ("risk", f"{cand.risk:.3f}")):
            ET.SubElement(props, "property", name=k, value=str(v))
        fails = skips = 0
        for r in cand.results:
            case = ET.SubElement(suite, "testcase", classname=f"maforecast.review.{cand.name}", name=r.id, time="0")
            if r.status == "fail":
                fails += 1
                node = ET.SubElement(case, "failure", message=r.message, type=r.check)
                node.text = f"{r.message}\nobserved: {r.observed}\nthreshold: {r.threshold}\nsource: {r.source or '-'}"
            elif r.status == "skipped":
                skips += 1
                ET.SubElement(case, "skipped", message=r.message)
            elif r.status == "warn":
                ET.SubElement(case, "system-out").text = f"WARNING: {r.message}"
        suite.set("tests", str(len(cand.results)))
        suite.set("failures", str(fails))
        suite.set("errors", "0")
        suite.set("skipped", str(skips))
        totals["tests"] += len(cand.results)
        totals["failures"] += fails
        totals["skipped"] += skips
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
