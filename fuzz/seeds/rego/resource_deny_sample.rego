package policy
import rego.v1

default allow = false

allow if {
  not input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
