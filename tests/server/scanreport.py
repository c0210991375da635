"""Facts from the machine-readable reports of the TLS scanners, one per line,
for tests/server/scanners.sh to assert on:

  scanreport.py sslscan FILE.xml   (sslscan --xml=FILE.xml)
      protocol NAME enabled|disabled    NAME: ssl2 ssl3 tls1.0 ... tls1.3
      renegotiation supported=0|1 secure=0|1
      heartbleed VERSION vulnerable=0|1
      cipher VERSION NAME STRENGTH
  scanreport.py testssl FILE.json  (testssl.sh --jsonfile FILE.json)
      ID<TAB>SEVERITY<TAB>FINDING      one line per finding

Exits 1 with a reason when the report is missing or unreadable, so a
scanner that failed to run can never pass for a clean scan.
"""

import json
import sys
import xml.etree.ElementTree as ET


def sslscan(path):
    test = ET.parse(path).getroot().find("ssltest")
    if test is None:
        sys.exit(f"{path}: no <ssltest> (sslscan could not connect?)")
    for p in test.findall("protocol"):
        name = ("ssl" if p.get("type") == "ssl" else "tls") + p.get("version", "?")
        state = "enabled" if p.get("enabled") == "1" else "disabled"
        print(f"protocol {name} {state}")
    r = test.find("renegotiation")
    if r is not None:
        print(f"renegotiation supported={r.get('supported')} secure={r.get('secure')}")
    for h in test.findall("heartbleed"):
        print(f"heartbleed {h.get('sslversion')} vulnerable={h.get('vulnerable')}")
    for c in test.findall("cipher"):
        print(f"cipher {c.get('sslversion')} {c.get('cipher')} {c.get('strength')}")


def testssl(path):
    with open(path, encoding="utf-8") as f:
        findings = json.load(f)
    if not isinstance(findings, list) or not findings:
        sys.exit(f"{path}: no findings")
    for x in findings:
        finding = " ".join(str(x.get("finding", "")).split())
        print(f"{x.get('id')}\t{x.get('severity')}\t{finding}")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("sslscan", "testssl"):
        sys.exit("usage: scanreport.py sslscan|testssl FILE")
    try:
        {"sslscan": sslscan, "testssl": testssl}[sys.argv[1]](sys.argv[2])
    except (OSError, ValueError, ET.ParseError) as e:
        sys.exit(f"{sys.argv[2]}: {e}")


main()
