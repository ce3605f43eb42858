package cluster

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// TestBucketQuantile: the estimate follows PromQL's histogram_quantile.
func TestBucketQuantile(t *testing.T) {
	t.Parallel()
	buckets := func(pairs ...float64) []*dto.Bucket {
		var out []*dto.Bucket
		for i := 0; i+1 < len(pairs); i += 2 {
			ub, n := pairs[i], uint64(pairs[i+1])
			out = append(out, &dto.Bucket{UpperBound: &ub, CumulativeCount: &n})
		}
		return out
	}
	for _, tt := range []struct {
		name    string
		buckets []*dto.Bucket
		count   uint64
		q, want float64
	}{
		{"all in the first bucket", buckets(0.001, 100, 0.01, 100), 100, 0.99, 0.00099},
		{"interpolated in the second", buckets(0.001, 50, 0.011, 100), 100, 0.99, 0.0108},
		{"past the last bound", buckets(0.001, 10, 0.25, 50), 100, 0.99, 0.25},
		{"empty buckets before", buckets(0.001, 0, 0.002, 0, 0.004, 10), 10, 0.5, 0.003},
	} {
		if got := bucketQuantile(tt.q, tt.buckets, tt.count); got < tt.want*0.999 || got > tt.want*1.001 {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
