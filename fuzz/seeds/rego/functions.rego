package policy
import rego.v1

tier(v) := 2 if v in query_reference_value("svn")
tier(v) := 96 if not v in query_reference_value("svn")

default allow = false
allow if tier(input.submods.cpu0["ear.veraison.annotated-evidence"].sample.svn) < 32

hardware := tier(input.sample.svn)
configuration := to_number(input.sample.svn) + 1 if regex.match(`^[0-9]+$`, input.sample.svn)
