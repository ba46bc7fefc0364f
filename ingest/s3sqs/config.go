package s3sqs

import (
	"errors"
	"fmt"
	"time"

	"auditwatch/config/duration"
	"auditwatch/internal/awscfg"
)

// Config is an S3+SQS source's section of the config.
type Config struct {
	AWS awscfg.Config `yaml:"aws"`
	// QueueURL is the SQS queue receiving the bucket's ObjectCreated
	// notifications (direct S3 events or via SNS).
	QueueURL string `yaml:"queue_url"`
	// S3Endpoint overrides the S3 endpoint (defaults to aws.endpoint).
	S3Endpoint string `yaml:"s3_endpoint"`
	// PathStyle addresses buckets in the path, not the host name.
	PathStyle bool `yaml:"path_style"`
	// WaitTime is the SQS long-poll wait (max 20s).
	WaitTime duration.Duration `yaml:"wait_time"`
	// VisibilityTimeout is how long a received message stays hidden while
	// its objects are read; it is extended while work goes on.
	VisibilityTimeout duration.Duration `yaml:"visibility_timeout"`
	// MaxMessages per ReceiveMessage (1..10).
	MaxMessages int `yaml:"max_messages"`
	// BatchSize caps events per batch.
	BatchSize int `yaml:"batch_size"`
	// Parallel bounds how many messages (their objects) are read at once
	// (default 4), so a slow or hostile object does not hold the good
	// objects of the other messages behind it. SQS gives no order anyway.
	Parallel int `yaml:"parallel"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.WaitTime == 0 {
		c.WaitTime = duration.Duration(20 * time.Second)
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = duration.Duration(5 * time.Minute)
	}
	if c.MaxMessages == 0 {
		c.MaxMessages = 10
	}
	if c.BatchSize == 0 {
		c.BatchSize = 512
	}
	if c.Parallel == 0 {
		c.Parallel = 4
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if err := c.AWS.Validate(); err != nil {
		errs = append(errs, prefix("aws", err))
	}
	if c.QueueURL == "" {
		errs = append(errs, errors.New("queue_url: required"))
	}
	if c.WaitTime.D() < 0 || c.WaitTime.D() > 20*time.Second {
		errs = append(errs, errors.New("wait_time: must be within 0..20s"))
	}
	if c.VisibilityTimeout.D() < time.Second || c.VisibilityTimeout.D() > 12*time.Hour {
		errs = append(errs, errors.New("visibility_timeout: must be within 1s..12h"))
	}
	if c.MaxMessages < 1 || c.MaxMessages > 10 {
		errs = append(errs, errors.New("max_messages: must be within 1..10"))
	}
	if c.BatchSize <= 0 {
		errs = append(errs, errors.New("batch_size: must be positive"))
	}
	if c.Parallel < 1 || c.Parallel > 64 {
		errs = append(errs, errors.New("parallel: must be within 1..64"))
	}
	return errors.Join(errs...)
}

func prefix(p string, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			errs = append(errs, fmt.Errorf("%s.%w", p, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s.%w", p, err)
}
