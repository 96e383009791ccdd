package policy
import rego.v1

default executables := 33
default hardware := 97

executables := 3 if {
  input.sample.svn in query_reference_value("svn")
}

hardware := 2 if {
  input.sample
  is_object(input.runtime_data_claims)
}
