package policy
import rego.v1

svns := {s | some tee, ev in input; s := ev.svn}
fields := [k | input.sample[k]]
by_tee := {tee: count(ev) | some tee, ev in input; is_object(ev)}

trust_claims := {
  "executables": 3,
  "configuration": 2 * count(fields),
  "hardware": 2 + count(by_tee) - count(svns),
}

extensions := [{"name": "svns", "key": 1001, "value": svns}]
