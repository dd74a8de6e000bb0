package restart

import "github.com/hullrt/hull/config"

// Validate checks the interval as the monitor reads it.
func (c *Config) Validate() error {
	if _, err := parseInterval(c.Interval); err != nil {
		return config.InvalidValue(c.Interval, "not a positive Go duration such as \"10s\" (0 for the default)", "interval")
	}
	return nil
}
