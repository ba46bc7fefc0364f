// Package awscfg owns the AWS connection settings shared by the AWS
// sources (S3+SQS, CloudTrail LookupEvents): region, an optional endpoint
// override, and credentials from the default chain or from secrets.
package awscfg

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"auditwatch/internal/secret"
)

// Config is the `aws:` block of an AWS source.
type Config struct {
	Region string `yaml:"region"`
	// Endpoint overrides the service endpoint (VPC endpoints, tests).
	Endpoint string `yaml:"endpoint"`
	// AccessKeyID and SecretAccessKey, when set, replace the SDK's default
	// credential chain (environment, shared files, instance role).
	AccessKeyID     secret.Secret `yaml:"access_key_id"`
	SecretAccessKey secret.Secret `yaml:"secret_access_key"`
	SessionToken    secret.Secret `yaml:"session_token"`
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if c.Region == "" {
		errs = append(errs, errors.New("region: required"))
	}
	if c.Endpoint != "" {
		if u, err := url.Parse(c.Endpoint); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("endpoint: want an absolute URL, got %q", c.Endpoint))
		}
	}
	for _, f := range []struct {
		name string
		s    secret.Secret
	}{{"access_key_id", c.AccessKeyID}, {"secret_access_key", c.SecretAccessKey}, {"session_token", c.SessionToken}} {
		if err := f.s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		}
	}
	if c.AccessKeyID.IsZero() != c.SecretAccessKey.IsZero() {
		errs = append(errs, errors.New("access_key_id, secret_access_key: set both or neither"))
	}
	return errors.Join(errs...)
}

// Load builds the SDK config.
func (c Config) Load(ctx context.Context) (aws.Config, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(c.Region)}
	if !c.AccessKeyID.IsZero() {
		id, err := c.AccessKeyID.Value()
		if err != nil {
			return aws.Config{}, fmt.Errorf("aws access_key_id: %w", err)
		}
		key, err := c.SecretAccessKey.Value()
		if err != nil {
			return aws.Config{}, fmt.Errorf("aws secret_access_key: %w", err)
		}
		var tok string
		if !c.SessionToken.IsZero() {
			if tok, err = c.SessionToken.Value(); err != nil {
				return aws.Config{}, fmt.Errorf("aws session_token: %w", err)
			}
		}
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(id, key, tok)))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws config: %w", err)
	}
	if c.Endpoint != "" {
		cfg.BaseEndpoint = aws.String(c.Endpoint)
	}
	return cfg, nil
}
