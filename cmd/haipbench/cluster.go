package main

import (
	"context"
	"errors"
)

// openCluster: -cluster runs on internal/localcluster, which this tree
// does not have yet.
func (f *fabric) openCluster(context.Context, config) error {
	return errors.New("-cluster needs internal/localcluster, which this build does not include")
}
