/**
 * Alarms, each notifying one SNS topic (and the operator's email, when
 * `ATELIER_ALARM_EMAIL` is set) when it fires and when it clears:
 *
 * - the function's errors and throttles;
 * - the HTTP API's 5xx rate (per cent of requests, five-minute windows);
 * - throttled reads or writes on any table;
 * - the provider job failure rate per hour and provider spend per day,
 *   from the counters the Router writes as CloudWatch Embedded Metric
 *   Format lines (namespace, dimension and names read from
 *   `cloud-lambda/src/metrics.rs`), selected by this deployment's
 *   `Deployment` dimension, which the function is told.
 *
 * Missing data never raises an alarm: a quiet deployment is a healthy one.
 */

import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';

import { type AtelierCompute, metricsDeployment } from '../compute/resource.js';
import type { RouterMetrics } from '../contract.js';
import type { Settings } from '../settings.js';

/** The Router's EMF metrics the alarms read. */
export const ROUTER_METRICS = { jobsFinished: 'JobsFinished', jobFailures: 'JobFailures', spend: 'SpendNanoUsd' } as const;

export interface MonitoringProps {
  settings: Settings;
  compute: AtelierCompute;
  tables: Record<string, dynamodb.TableV2>;
  /** The Router's EMF namespace, dimension and metric names. */
  routerMetrics: RouterMetrics;
}

export class AtelierAlarms extends Construct {
  readonly topic: sns.Topic;
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const { settings, compute, tables, routerMetrics } = props;
    for (const name of Object.values(ROUTER_METRICS)) {
      if (!routerMetrics.names.includes(name)) {
        throw new Error(
          `the Router writes no ${name} metric (cloud-lambda/src/metrics.rs has ${routerMetrics.names.join(', ')})`,
        );
      }
    }
    this.topic = new sns.Topic(this, 'Topic', {
      topicName: `${settings.prefix}alarms`,
      displayName: `Atelier ${settings.prefix} alarms`,
      enforceSSL: true,
    });
    if (settings.alarmEmail) {
      this.topic.addSubscription(new subscriptions.EmailSubscription(settings.alarmEmail));
    }
    const fiveMinutes = Duration.minutes(5);
    const alarm = (id: string, description: string, props: cloudwatch.CreateAlarmOptions & { metric: cloudwatch.IMetric }) => {
      const a = new cloudwatch.Alarm(this, id, {
        alarmName: `${settings.prefix}${id}`,
        alarmDescription: description,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...props,
      });
      a.addAlarmAction(new actions.SnsAction(this.topic));
      a.addOkAction(new actions.SnsAction(this.topic));
      this.alarms.push(a);
      return a;
    };

    alarm('lambda-errors', 'The Router function failed invocations (crashes, timeouts).', {
      metric: compute.fn.metricErrors({ period: fiveMinutes, statistic: 'Sum' }),
      threshold: 5,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    });
    alarm('lambda-throttles', 'The Router function hit its reserved concurrency.', {
      metric: compute.fn.metricThrottles({ period: fiveMinutes, statistic: 'Sum' }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    });
    alarm('api-5xx-rate', 'Over 5% of API requests answered 5xx, two five-minute windows running.', {
      metric: new cloudwatch.MathExpression({
        expression: '100 * errors / MAX([requests, 1])',
        usingMetrics: {
          errors: compute.api.metricServerError({ period: fiveMinutes, statistic: 'Sum' }),
          requests: compute.api.metricCount({ period: fiveMinutes, statistic: 'Sum' }),
        },
        label: 'API 5xx %',
        period: fiveMinutes,
      }),
      threshold: 5,
      evaluationPeriods: 2,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    });
    for (const [name, table] of Object.entries(tables)) {
      alarm(`dynamodb-throttles-${name}`, `Reads or writes on ${settings.prefix}${name} were throttled.`, {
        metric: new cloudwatch.MathExpression({
          expression: 'reads + writes',
          usingMetrics: {
            reads: table.metric('ReadThrottleEvents', { period: fiveMinutes, statistic: 'Sum' }),
            writes: table.metric('WriteThrottleEvents', { period: fiveMinutes, statistic: 'Sum' }),
          },
          label: `${name} throttles`,
          period: fiveMinutes,
        }),
        threshold: 10,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      });
    }
    // One of this deployment's EMF metrics (the function is told the same
    // dimension value, ATELIER_METRICS_DEPLOYMENT).
    const routerMetric = (metricName: string, period: Duration) =>
      new cloudwatch.Metric({
        namespace: routerMetrics.namespace,
        metricName,
        dimensionsMap: { [routerMetrics.dimension]: metricsDeployment(settings) },
        period,
        statistic: 'Sum',
      });
    const hour = Duration.hours(1);
    alarm(
      'job-failure-rate',
      `${settings.jobFailureRateAlarmPercent}% or more of an hour's provider jobs failed ` +
        `(${settings.jobFailuresPerHourAlarm} failures at least).`,
      {
        // A job counts in JobsFinished whatever its end, so failures never
        // outnumber it; an hour with too few failures reads 0.
        metric: new cloudwatch.MathExpression({
          expression:
            `IF(FILL(failures, 0) >= ${settings.jobFailuresPerHourAlarm}, ` +
            '100 * FILL(failures, 0) / FILL(finished, 1), 0)',
          usingMetrics: {
            failures: routerMetric(ROUTER_METRICS.jobFailures, hour),
            finished: routerMetric(ROUTER_METRICS.jobsFinished, hour),
          },
          label: 'Job failure %',
          period: hour,
        }),
        threshold: settings.jobFailureRateAlarmPercent,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      },
    );
    alarm('daily-spend', `Provider spend reached $${settings.dailySpendAlarmUsd} within a day.`, {
      metric: routerMetric(ROUTER_METRICS.spend, Duration.days(1)),
      threshold: settings.dailySpendAlarmUsd * 1e9,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    });
  }
}
