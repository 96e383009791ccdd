package policy
import rego.v1

default allow := false

allowed := ["1", "2", "3"]

allow if {
  some svn in allowed
  svn == input.submods.cpu0["ear.veraison.annotated-evidence"].sample.svn
  every part in data["resource-path"] { part != "" }
}

executables := 3 if {
  some i, v in query_reference_value("executables")
  i >= 0
  v == 3
}

file_system := x if {
  x := sum([n | some n in [1, 1]]) * 16
}
