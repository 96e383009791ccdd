package policy
import rego.v1

default allow = false

allow if {
  data["resource-path"][0] == "repo"
  data["resource-path"][1] != "secret"
  count(data["resource-path"]) == 3
}

allow if {
  input.submods.cpu0["ear.veraison.annotated-evidence"].sample.svn in query_reference_value("svn")
  startswith(concat("/", data["resource-path"]), "repo/type")
}
