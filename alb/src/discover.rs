//! Target groups with their tags: what a Cell selects from.

use std::collections::BTreeMap;

use crate::{Alb, AlbError};

/// How many ARNs one DescribeTags call takes, at most (ELBv2's limit).
const TAGS_BATCH: usize = 20;

/// A target group and its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetGroup {
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

impl Alb {
    /// Lists every target group of the account and region with its tags: DescribeTargetGroups
    /// page by page, then DescribeTags for 20 ARNs at a time.
    pub async fn tagged_target_groups(&self) -> Result<Vec<TargetGroup>, AlbError> {
        let mut groups = Vec::new();
        let mut pages = self
            .client
            .describe_target_groups()
            .set_page_size(self.page_size)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AlbError::from_sdk("DescribeTargetGroups", e))?;
            for tg in page.target_groups() {
                if let Some(arn) = tg.target_group_arn() {
                    groups.push(TargetGroup {
                        arn: arn.to_owned(),
                        name: tg.target_group_name().unwrap_or_default().to_owned(),
                        tags: BTreeMap::new(),
                    });
                }
            }
        }
        for batch in groups.chunks_mut(TAGS_BATCH) {
            let arns: Vec<String> = batch.iter().map(|g| g.arn.clone()).collect();
            let out = self
                .client
                .describe_tags()
                .set_resource_arns(Some(arns))
                .send()
                .await
                .map_err(|e| AlbError::from_sdk("DescribeTags", e))?;
            for description in out.tag_descriptions() {
                let Some(group) = batch
                    .iter_mut()
                    .find(|g| Some(g.arn.as_str()) == description.resource_arn())
                else {
                    continue;
                };
                for tag in description.tags() {
                    let Some(key) = tag.key() else { continue };
                    group
                        .tags
                        .insert(key.to_owned(), tag.value().unwrap_or_default().to_owned());
                }
            }
        }
        Ok(groups)
    }
}
