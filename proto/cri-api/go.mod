// Pins the CRI that crust speaks: proto/build.rs compiles api.proto from this module, fetched
// through the Go module proxy and checked against go.sum. Nothing of it is copied here.
module crust.dev/cri-api-pin

go 1.24

require k8s.io/cri-api v0.37.2
